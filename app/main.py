"""Builds the FastAPI application: settings, shared clients and routers."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.api import health, webhooks
from app.bridge import Bridge
from app.http_transport import PooledTransport
from app.logs import configure_logging
from app.providers import build_adapters
from app.routing import table_from_settings
from app.settings import Settings, load_settings
from app.store import MemoryStore
from app.ultravox import UltravoxClient

logger = logging.getLogger("app")


def create_app(settings: Settings | None = None, *, setup_logging: bool = False) -> FastAPI:
    """The application. Without `settings` they are read from the environment and `.env` at
    start-up; `setup_logging` installs the service's log format (off in tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings if settings is not None else load_settings()
        if setup_logging:
            configure_logging(config.log_level, mask_numbers=config.log_phone_numbers == "masked")
        adapters = build_adapters(config)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(transport=PooledTransport(limits)) as http:
            ultravox = UltravoxClient(
                http,
                api_url=config.ultravox_api_url,
                api_key=config.ultravox_api_key.get_secret_value(),
                deadline_seconds=config.ultravox_deadline_seconds,
            )
            app.state.settings = config
            app.state.store = MemoryStore()
            app.state.bridge = Bridge(config, adapters, table_from_settings(config), ultravox)
            app.state.draining = False
            _log_startup(config, app.state.bridge)
            yield

    app = FastAPI(title="Ultravox phone bridge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    return app


def _log_startup(settings: Settings, bridge: Bridge) -> None:
    ready = sorted(name for name, adapter in bridge.adapters.items() if adapter.ready)
    waiting = sorted(name for name, adapter in bridge.adapters.items() if not adapter.ready)
    logger.info(
        "startup",
        extra={
            "fields": {
                "providers_ready": ",".join(ready) or "none",
                "providers_without_secret": ",".join(waiting) or "none",
                "call": "agent" if settings.ultravox_agent_id else "inline",
                "public_base_url": settings.public_base_url or "unset",
            }
        },
    )
    if not settings.verify_signatures:
        logger.warning(
            "startup.signatures_off",
            extra={
                "fields": {"hint": "VERIFY_SIGNATURES=false: anyone can start calls; local only"}
            },
        )
    if not ready:
        logger.warning(
            "startup.no_provider_ready",
            extra={
                "fields": {"hint": "set TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY or PLIVO_AUTH_TOKEN"}
            },
        )


app = create_app(setup_logging=True)
