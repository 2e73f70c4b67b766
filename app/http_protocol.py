"""uvicorn's HTTP protocol (httptools) with the limits it lacks for a server on the internet.

uvicorn closes an idle keep-alive connection, but nothing else: a connection that sends nothing,
half a request head, or a body a byte at a time stays open for ever, and each holds a file
descriptor, so about a thousand of them lock everyone out. This protocol gives the request head
and the request body each a deadline (408 and close), bounds the size of a request head (431), and
caps the connections of the worker: past the cap, the connection that has waited longest
without sending a whole request head is closed to make room.

uvicorn's own `limit_concurrency` is not used for the cap: it answers 503 to every request once
the count is reached, `/healthz` included, and closes nothing, which is the lock-out itself.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("app.http")

# A request head of this size is far beyond any provider's webhook (a few KiB); httptools itself
# has no limit, so a client could grow one without end.
MAX_HEAD_BYTES = 64 * 1024


def _answer(status: bytes, text: bytes) -> bytes:
    """A complete plain-text answer that closes the connection."""
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


TIMEOUT_ANSWER = _answer(b"408 Request Timeout", b"request read timed out\n")
HEAD_TOO_LARGE_ANSWER = _answer(
    b"431 Request Header Fields Too Large", b"request head over %d bytes\n" % MAX_HEAD_BYTES
)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request's head and body may take to arrive, and how many connections a
    worker keeps open."""

    head_timeout: float
    body_timeout: float
    max_connections: int


# Evictions are logged at most this often: a flood of connections must not flood the log too.
EVICTION_LOG_INTERVAL_SECONDS = 10.0


def guarded_protocol(limits: ConnectionLimits) -> type["GuardedHttpToolsProtocol"]:
    """A protocol class for one server (`uvicorn.Config(http=...)`), with its own limits and
    its own list of connections waiting for a request."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"limits": limits, "waiting": {}, "evicted": 0, "evictions_logged_at": -float("inf")},
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    # Connections between requests (new, keep-alive, or part way through a head), oldest first:
    # the ones closed when the worker is over its connection cap.
    waiting: ClassVar[dict["GuardedHttpToolsProtocol", None]]
    evicted: ClassVar[int]
    evictions_logged_at: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        # What the connection is waiting for: a request's first byte, the rest of its head, or
        # its body (the app may be answering meanwhile).
        self._phase: Literal["idle", "head", "body"] = "idle"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting[self] = None
        self._start_timer(self.limits.head_timeout)
        if len(self.connections) > self.limits.max_connections:
            victim = next((c for c in self.waiting if c is not self), self)
            victim.transport.close()
            self._log_eviction()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = "head"
        if self._read_timer is None:  # a keep-alive connection's next request
            self._start_timer(self.limits.head_timeout)

    def data_received(self, data: bytes) -> None:
        # httptools buffers a header until the next one begins, so the head's size is counted
        # here: the bytes received since the last head ended, while no head is complete.
        reading_head = self._phase != "body"
        if reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if reading_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(HEAD_TOO_LARGE_ANSWER)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_bytes = 0
        self._stop_timer()
        self.waiting.pop(self, None)
        super().on_headers_complete()
        if not self.transport.is_closing() and not self.parser.should_upgrade():
            self._phase = "body"
            self._start_timer(self.limits.body_timeout)

    def on_message_complete(self) -> None:
        self._stop_timer()
        self._phase = "idle"
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self.waiting[self] = None  # idle until uvicorn's keep-alive timeout

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the connection over, with its own timeouts.
        self._stop_timer()
        self.waiting.pop(self, None)
        super().handle_websocket_upgrade()

    @classmethod
    def _log_eviction(cls) -> None:
        cls.evicted += 1
        now = time.monotonic()
        if now - cls.evictions_logged_at >= EVICTION_LOG_INTERVAL_SECONDS:
            cls.evictions_logged_at = now
            logger.warning(
                "http.connections_evicted",
                extra={"fields": {"evicted": cls.evicted, "cap": cls.limits.max_connections}},
            )
            cls.evicted = 0

    def _start_timer(self, seconds: float) -> None:
        self._stop_timer()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        """The head or body did not arrive in time: answer 408 (unless no request was begun or
        the app has already answered it) and close."""
        self._read_timer = None
        if self.transport.is_closing():
            return
        begun = self._phase == "head" or (
            self._phase == "body" and self.cycle is not None and not self.cycle.response_started
        )
        if begun:
            self.transport.write(TIMEOUT_ANSWER)
        self.transport.close()
