"""Shared request dependencies."""

from typing import Annotated

from fastapi import Depends, Request

from app.inbound import Bridge
from app.settings import ServiceSettings
from app.store import Store


# `async def`: FastAPI runs a plain `def` dependency in a worker thread, two thread hops per
# webhook for what is an attribute read.
async def get_bridge(request: Request) -> Bridge:
    bridge: Bridge = request.app.state.bridge
    return bridge


async def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


BridgeDep = Annotated[Bridge, Depends(get_bridge)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
