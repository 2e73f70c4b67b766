"""Builds the FastAPI application: settings, shared clients and routers."""

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp

from app.api import (
    console,
    health,
    media,
    metrics,
    outbound,
    records,
    status,
    transfer,
    ultravox_events,
    web,
)
from app.api.errors import EXCEPTION_HANDLERS
from app.api.header_limit import HeaderSizeLimit
from app.api.request_id import RequestIdMiddleware
from app.api.webhooks import Reports, WebhookDispatch
from app.asyncio_transport import AsyncioTransport
from app.config import load_settings
from app.console.access import Console
from app.dedupe import CallDeduplicator
from app.http_transport import MAX_RESPONSE_BYTES
from app.inbound import Bridge
from app.logs import configure_logging
from app.outbound.flow import OutboundCalls
from app.providers import (
    NO_PROVIDER_HINT,
    TRANSFER_DRIVERS,
    build_adapters,
    build_media_endpoints,
    providers_taking_calls,
)
from app.records.database import create_engine
from app.records.lifecycle import CallLifecycle
from app.records.limits import build_live_calls
from app.records.outbox import Outbox
from app.records.service import CallRecords
from app.routing import table_from_settings, unused_settings
from app.routing.reload import reload_on_sighup
from app.settings import ServiceSettings
from app.store import MemoryStore, Store
from app.transfer.flow import TransferDesk, check_transfer_settings
from app.transfer.steps import on_call_records, record_transfer_steps
from app.ultravox import UltravoxClient
from app.web.calls import WebCalls
from app.web.limits import Limits, MemoryLimits

logger = logging.getLogger("app")

ULTRAVOX_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


def ultravox_transport() -> httpx.AsyncBaseTransport:
    """How requests reach Ultravox: httpx's requests over asyncio's connections
    (app/asyncio_transport.py), reading no answer past `MAX_RESPONSE_BYTES`
    (app/http_transport.py)."""
    return AsyncioTransport(ULTRAVOX_LIMITS, max_bytes=MAX_RESPONSE_BYTES)


def create_app(settings: ServiceSettings | None = None, *, setup_logging: bool = False) -> FastAPI:
    """The application. Without `settings` they are read from the environment and `.env` at
    start-up; `setup_logging` installs the service's log format (off in tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings if settings is not None else load_settings()
        if setup_logging:
            configure_logging(config.log_level, mask_numbers=config.log_phone_numbers == "masked")
        store = build_store(config)
        adapters = build_adapters(config, store)
        transport = ultravox_transport()  # closed with the client
        async with httpx.AsyncClient(transport=transport) as http:
            ultravox = UltravoxClient(
                transport,
                api_url=config.ultravox_api_url,
                api_key=config.ultravox_api_key.get_secret_value(),
                deadline_seconds=config.ultravox_deadline_seconds,
            )
            app.state.settings = config
            app.state.reports = Reports()
            app.state.console = Console.from_settings(config)
            app.state.store = store
            app.state.media_endpoints = build_media_endpoints(config, adapters)
            dedupe = CallDeduplicator(
                store,
                ttl_seconds=config.dedupe_ttl_seconds,
                join_window_seconds=config.dedupe_join_window_seconds,
                lease_seconds=config.dedupe_lease_seconds,
                wait_seconds=config.ultravox_deadline_seconds,
            )
            call_records, app.state.outbox = await start_records(config, http)
            app.state.records = call_records
            lifecycle = CallLifecycle(
                call_records, mask_numbers=config.record_phone_numbers == "masked"
            )
            app.state.bridge = Bridge(
                config, adapters, table_from_settings(config), ultravox, dedupe, lifecycle
            )
            app.state.transfers = build_transfers(config, app.state.bridge, http, store)
            # Each transfer step lands on the transferred call's timeline, queued, never awaited.
            stop_recording_transfers = record_transfer_steps(on_call_records(call_records))
            app.state.draining = False
            app.state.live_relays = 0
            app.state.outbound = OutboundCalls.from_settings(config)
            app.state.web_calls = WebCalls(config, build_web_limits(config), lifecycle)
            _log_startup(config, app.state.bridge)
            freeze_startup_objects()
            try:
                async with reload_on_sighup(app.state.bridge, config):
                    yield
            finally:
                # The last webhooks' log lines, metrics and records, before the records close.
                app.state.reports.flush()
                if app.state.transfers is not None:
                    await app.state.transfers.idle()
                stop_recording_transfers()
                if app.state.outbound is not None:
                    await app.state.outbound.aclose()
                await call_records.close()
                await app.state.store.close()
                await app.state.web_calls.limits.close()

    app = BridgeApp(
        title="Ultravox phone bridge",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    # Before media's `/{provider}/events`, which would take `/ultravox/events` for a provider.
    app.include_router(ultravox_events.router)
    app.include_router(outbound.router)
    app.include_router(media.router)
    app.include_router(web.router)
    app.include_router(transfer.router)
    app.include_router(status.router)
    app.include_router(records.router)
    app.include_router(console.router)
    return app


class BridgeApp(FastAPI):
    """The application: the framework's, with the provider call webhooks answered in front of it
    (`WebhookDispatch`), and the header limit and the request id in front of both."""

    def build_middleware_stack(self) -> ASGIApp:
        framework = super().build_middleware_stack()
        # The header limit first, before anything reads the headers.
        return HeaderSizeLimit(RequestIdMiddleware(WebhookDispatch(framework, self.state)))


def build_transfers(
    settings: ServiceSettings, bridge: Bridge, http: httpx.AsyncClient, store: Store
) -> TransferDesk | None:
    """The transfer desk when a route offers transfers; `ConfigError` when a provider whose
    calls such a route takes lacks a setting transfers need."""
    providers = check_transfer_settings(settings, bridge.routing, bridge.adapters, TRANSFER_DRIVERS)
    if not providers:
        return None
    drivers = {name: TRANSFER_DRIVERS[name](settings, http) for name in providers}
    desk = TransferDesk(settings, bridge, drivers, store)
    bridge.transfers = desk
    return desk


def freeze_startup_objects() -> None:
    """Move everything start-up allocated (modules, settings, clients: about 75,000 objects)
    out of the garbage collector's sight. They live as long as the process, yet every full
    collection would walk them all again: a pause of tens of milliseconds (docs/benchmarks.md)
    in the middle of webhooks and relayed audio frames."""
    gc.collect()
    gc.freeze()


async def start_records(
    settings: ServiceSettings, http: httpx.AsyncClient
) -> tuple[CallRecords, Outbox | None]:
    """The call records: the database migrated to the current schema, the live-call count,
    the writer and upkeep tasks, and the outbox sender when CALL_EVENTS_URL is set."""
    engine = create_engine(settings.database_url.get_secret_value())
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    live_calls = build_live_calls(
        redis_url, settings.max_concurrent_calls, settings.redis_timeout_seconds
    )
    records = CallRecords(
        engine,
        live_calls,
        retention_days=settings.call_retention_days,
        outbox_delay=settings.call_events_delay_seconds if settings.call_events_url else None,
    )
    await records.migrate()
    records.start()
    if not settings.call_events_url:
        return records, None
    secrets = [secret.get_secret_value() for secret in settings.call_events_secret]
    outbox = Outbox(records, http, settings.call_events_url, secrets)
    records.add_task(asyncio.create_task(outbox.run(), name="records-outbox"))
    return records, outbox


def build_store(settings: ServiceSettings) -> Store:
    """Redis when `REDIS_URL` is set, so replicas share records; this process's memory otherwise."""
    if settings.redis_url is None:
        return MemoryStore()
    from app.redis_store import RedisStore  # the client costs memory a single replica never uses

    return RedisStore(
        settings.redis_url.get_secret_value(), timeout_seconds=settings.redis_timeout_seconds
    )


def build_web_limits(settings: ServiceSettings) -> Limits:
    """Web call limits shared through Redis when `REDIS_URL` is set; this process's otherwise."""
    if settings.redis_url is None:
        return MemoryLimits()
    from app.web.limits import RedisLimits

    return RedisLimits(
        settings.redis_url.get_secret_value(), timeout_seconds=settings.redis_timeout_seconds
    )


def _call_source(settings: ServiceSettings) -> str:
    """What decides each call: the routes file, or the environment's one agent or inline call."""
    if settings.routes_file is not None:
        return "routes file"
    return "agent" if settings.ultravox_agent_id else "inline"


def _log_startup(settings: ServiceSettings, bridge: Bridge) -> None:
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
                "database": settings.database_url.get_secret_value().split("://", 1)[0],
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
    if settings.verify_signatures and settings.public_base_url is None:
        logger.warning(
            "startup.public_base_url_unset",
            extra={
                "fields": {
                    "hint": "set PUBLIC_BASE_URL to the https origin in the providers' consoles; "
                    "without it signatures are checked against the URL the request names, whose "
                    "host the client chooses"
                }
            },
        )
    unused = unused_settings(settings)
    if unused:
        logger.warning(
            "startup.settings_unused",
            extra={"fields": {"settings": ",".join(unused), "reason": "ROUTES_FILE is set"}},
        )
    if not providers_taking_calls(settings, bridge.adapters):
        logger.warning("startup.no_provider_ready", extra={"fields": {"hint": NO_PROVIDER_HINT}})


app = create_app(setup_logging=True)
