"""Builds the FastAPI application: settings, shared clients and routers."""

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.aiohttp_transport import AiohttpTransport
from app.api import calls, health, media, metrics, webhooks
from app.api.request_id import RequestIdMiddleware
from app.bridge import Bridge
from app.dedupe import CallDeduplicator
from app.logs import configure_logging
from app.outbound import OutboundCalls
from app.providers import build_adapters, build_media_endpoints
from app.routing import table_from_settings, unused_settings
from app.routing.reload import reload_on_sighup
from app.settings import Settings, load_settings
from app.store import MemoryStore, Store
from app.ultravox import UltravoxClient

logger = logging.getLogger("app")

ULTRAVOX_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


def ultravox_transport() -> httpx.AsyncBaseTransport:
    """How requests reach Ultravox: through aiohttp, under httpx's API (app/aiohttp_transport)."""
    return AiohttpTransport(ULTRAVOX_LIMITS)


def create_app(settings: Settings | None = None, *, setup_logging: bool = False) -> FastAPI:
    """The application. Without `settings` they are read from the environment and `.env` at
    start-up; `setup_logging` installs the service's log format (off in tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings if settings is not None else load_settings()
        if setup_logging:
            configure_logging(config.log_level, mask_numbers=config.log_phone_numbers == "masked")
        store = build_store(config)
        adapters = build_adapters(config, store)
        async with httpx.AsyncClient(transport=ultravox_transport()) as http:
            ultravox = UltravoxClient(
                http,
                api_url=config.ultravox_api_url,
                api_key=config.ultravox_api_key.get_secret_value(),
                deadline_seconds=config.ultravox_deadline_seconds,
            )
            app.state.settings = config
            app.state.store = store
            app.state.media_endpoints = build_media_endpoints(config, adapters)
            dedupe = CallDeduplicator(
                store,
                ttl_seconds=config.dedupe_ttl_seconds,
                lease_seconds=config.dedupe_lease_seconds,
                wait_seconds=config.ultravox_deadline_seconds,
            )
            app.state.bridge = Bridge(
                config, adapters, table_from_settings(config), ultravox, dedupe
            )
            app.state.draining = False
            app.state.live_relays = 0
            app.state.outbound = OutboundCalls.from_settings(config)
            _log_startup(config, app.state.bridge)
            freeze_startup_objects()
            try:
                async with reload_on_sighup(app.state.bridge, config):
                    yield
            finally:
                if app.state.outbound is not None:
                    await app.state.outbound.aclose()
                await app.state.store.close()

    app = FastAPI(title="Ultravox phone bridge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(calls.router)
    app.include_router(media.router)
    return app


def freeze_startup_objects() -> None:
    """Move everything start-up allocated (modules, settings, clients: about 75,000 objects)
    out of the garbage collector's sight. They live as long as the process, yet every full
    collection would walk them all again: a pause of tens of milliseconds (docs/benchmarks.md)
    in the middle of webhooks and relayed audio frames."""
    gc.collect()
    gc.freeze()


def build_store(settings: Settings) -> Store:
    """Redis when `REDIS_URL` is set, so replicas share records; this process's memory otherwise."""
    if settings.redis_url is None:
        return MemoryStore()
    from app.redis_store import RedisStore  # the client costs memory a single replica never uses

    return RedisStore(
        settings.redis_url.get_secret_value(), timeout_seconds=settings.redis_timeout_seconds
    )


def _call_source(settings: Settings) -> str:
    """What decides each call: the routes file, or the environment's one agent or inline call."""
    if settings.routes_file is not None:
        return "routes file"
    return "agent" if settings.ultravox_agent_id else "inline"


def _log_startup(settings: Settings, bridge: Bridge) -> None:
    ready = sorted(name for name, adapter in bridge.adapters.items() if adapter.ready)
    waiting = sorted(name for name, adapter in bridge.adapters.items() if not adapter.ready)
    logger.info(
        "startup",
        extra={
            "fields": {
                "providers_ready": ",".join(ready) or "none",
                "providers_without_secret": ",".join(waiting) or "none",
                "pid": os.getpid(),  # for `kill -HUP` (reload the routes) and `kill -TERM`
                "call": _call_source(settings),
                "public_base_url": settings.public_base_url or "unset",
                "store": "memory" if settings.redis_url is None else "redis",
                "routes_file": str(settings.routes_file) if settings.routes_file else "unset",
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
    unused = unused_settings(settings)
    if unused:
        logger.warning(
            "startup.settings_unused",
            extra={"fields": {"settings": ",".join(unused), "reason": "ROUTES_FILE is set"}},
        )
    if not ready:
        logger.warning(
            "startup.no_provider_ready",
            extra={
                "fields": {"hint": "set TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY or PLIVO_AUTH_TOKEN"}
            },
        )


app = create_app(setup_logging=True)
