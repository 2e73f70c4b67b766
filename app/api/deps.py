"""Shared request dependencies."""

from typing import Annotated

from fastapi import Depends, Request

from app.inbound import Bridge
from app.records.service import CallRecords
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


async def get_records(request: Request) -> CallRecords:
    records: CallRecords = request.app.state.records
    return records


BridgeDep = Annotated[Bridge, Depends(get_bridge)]
RecordsDep = Annotated[CallRecords, Depends(get_records)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
