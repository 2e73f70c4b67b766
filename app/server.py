"""The process around the app: uvicorn, with a readiness drain before its graceful shutdown.

Kubernetes (like most orchestrators) sends SIGTERM and removes the pod from its Service at the
same time; the removal takes a few seconds to reach every load balancer. uvicorn alone would
stop accepting connections at once and refuse the calls still routed here. So on SIGTERM the
app is marked draining (`/readyz` answers 503) and keeps serving for `SHUTDOWN_DRAIN_SECONDS`;
then, while calls whose audio the service relays itself (Vonage, Asterisk) are still live, it
waits for them to end, for at most `SHUTDOWN_RELAY_GRACE_SECONDS` (uvicorn's shutdown would close
their sockets and so end the calls); then uvicorn's own graceful shutdown closes the sockets and
lets the webhooks in flight finish, for at most the Ultravox deadline plus a margin.
"""

import logging
import math
import resource
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from app.http_protocol import ConnectionLimits, guarded_protocol
from app.settings import ServiceSettings
from app.ws_protocol import MAX_MESSAGE_BYTES, LeanWebSocketProtocol

logger = logging.getLogger(__name__)

# Beyond the Ultravox deadline, what a webhook may still need: store round trips, the answer.
SHUTDOWN_MARGIN_SECONDS = 2
# File descriptors kept for what is not a client connection: the listening socket, Ultravox and
# Redis connections, the relays' Ultravox sockets, log files.
RESERVED_DESCRIPTORS = 128


class DrainingServer(uvicorn.Server):
    """A uvicorn server that, on SIGTERM, calls `on_drain` and keeps serving for
    `drain_seconds` before shutting down. SIGINT (Ctrl-C in a terminal), or a second SIGTERM,
    shuts down at once as plain uvicorn does."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain_seconds: float,
        on_drain: Callable[[], None],
        live_relays: Callable[[], int] = lambda: 0,
        relay_grace_seconds: float = 0,
    ) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self._on_drain = on_drain
        self._live_relays = live_relays
        self._relay_grace_seconds = relay_grace_seconds
        self._drain_ends: float | None = None
        self._drain_announced = False
        self._relay_wait_announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_ends is None and not self.should_exit:
            # A signal handler: set flags only; the main loop's tick does the rest.
            self._drain_ends = time.monotonic() + self._drain_seconds
            self._on_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_ends is not None:
            if not self._drain_announced:
                self._drain_announced = True
                logger.info(
                    "shutdown.draining",
                    extra={"fields": {"drain_seconds": self._drain_seconds, "readyz": 503}},
                )
            now = time.monotonic()
            if now >= self._drain_ends and not self._waiting_for_relays(now - self._drain_ends):
                self.should_exit = True
        return await super().on_tick(counter)

    def _waiting_for_relays(self, waited: float) -> bool:
        """Whether to go on serving, after the drain, for the relayed calls still live."""
        live = self._live_relays()
        if live == 0 or waited >= self._relay_grace_seconds:
            return False
        if not self._relay_wait_announced:
            self._relay_wait_announced = True
            logger.info(
                "shutdown.waiting_for_relays",
                extra={"fields": {"live_relays": live, "at_most_s": self._relay_grace_seconds}},
            )
        return True


def connection_cap(wanted: int) -> int:
    """`HTTP_MAX_CONNECTIONS`, lowered to what the process's descriptor limit leaves room for:
    past that limit the server could not accept even the connection that would evict one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft - RESERVED_DESCRIPTORS >= wanted:
        return wanted
    cap = max(16, soft - RESERVED_DESCRIPTORS)
    logger.warning(
        "startup.connection_cap_lowered",
        extra={
            "fields": {
                "http_max_connections": wanted,
                "cap": cap,
                "descriptor_limit": soft,
                "fix": "raise the open-files limit (ulimit -n) or lower HTTP_MAX_CONNECTIONS",
            }
        },
    )
    return cap


def uvicorn_config(app: FastAPI, settings: ServiceSettings) -> uvicorn.Config:
    """uvicorn's configuration for `app`, from the settings only (uvicorn would otherwise read
    FORWARDED_ALLOW_IPS from the process environment and miss the one in `.env`): address, proxy
    headers, the request-read deadlines and connection cap of `app.http_protocol`, the WebSocket
    protocol of `app.ws_protocol`, and the graceful-shutdown bound."""
    limits = ConnectionLimits(
        head_timeout=settings.http_head_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        max_connections=connection_cap(settings.http_max_connections),
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        http=guarded_protocol(limits),
        ws=LeanWebSocketProtocol,
        ws_max_size=MAX_MESSAGE_BYTES,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        timeout_graceful_shutdown=math.ceil(
            settings.ultravox_deadline_seconds + SHUTDOWN_MARGIN_SECONDS
        ),
    )


def draining_server(app: FastAPI, settings: ServiceSettings) -> DrainingServer:
    """The server for `app`, with the readiness drain and the wait for relayed calls."""

    def mark_draining() -> None:
        app.state.draining = True

    return DrainingServer(
        uvicorn_config(app, settings),
        drain_seconds=settings.shutdown_drain_seconds,
        on_drain=mark_draining,
        live_relays=lambda: int(app.state.live_relays),
        relay_grace_seconds=settings.shutdown_relay_grace_seconds,
    )


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run `app` on the configured host and port until SIGTERM or SIGINT."""
    draining_server(app, settings).run()
