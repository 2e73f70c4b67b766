"""The dialer interface: what a provider module implements to place outbound calls.

A dialer asks its provider to phone someone and connect the answered call to an Ultravox
`joinUrl`, with the provider's official SDK. SDKs are imported when a dialer is built, which
happens only when outbound calling is configured, so inbound-only start-up never loads them.
"""

import asyncio
import socket
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from app.settings import ServiceSettings

T = TypeVar("T")

# How long one request to a provider's REST API may take before the dialer gives up on it.
PROVIDER_REQUEST_TIMEOUT_SECONDS = 10.0


class DialError(Exception):
    """The provider did not accept the call."""

    def __init__(self, provider: str, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status_code = status_code


class DialRefused(DialError):
    """The provider answered and refused the call (invalid number, no credit, bad credentials):
    no call was placed."""


class DialNotSent(DialRefused):
    """The request never reached the provider (its name did not resolve, the connection was
    refused or timed out): no call was placed."""


def never_sent(exc: Exception) -> bool:
    """Whether a failed `requests` call (the Twilio and Plivo SDKs) failed before the request
    left this machine, so the provider cannot be dialing."""
    from requests.exceptions import ConnectionError, ConnectTimeout
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    if isinstance(exc, ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return (
        isinstance(exc, ConnectionError)
        and isinstance(cause, MaxRetryError)
        and isinstance(cause.reason, NewConnectionError)
    )


def plain_reason(exc: BaseException) -> str:
    """Why a request to a provider failed, in a few plain words for the API's answer and the
    log: what the chain of causes says (a name that does not resolve, a refused connection, a
    timeout), not the library's exception repr with its object addresses."""
    causes: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or current in causes:
            continue
        causes.append(current)
        # Libraries wrap the OS error as a cause, a context, urllib3's `reason` or an argument.
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        pending += list(current.args[:1])
    names = {type(cause).__name__ for cause in causes}
    for cause in causes:  # the response caps' own message already says it plainly
        if type(cause).__name__ == "ResponseTooLarge":
            return str(cause)
    if any(isinstance(c, socket.gaierror) for c in causes) or "NameResolutionError" in names:
        return "its host name does not resolve"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "the connection was refused"
    if any(isinstance(c, TimeoutError) for c in causes) or any("Timeout" in n for n in names):
        return "it did not answer in time"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "the TLS handshake failed"
    return "the connection failed"


class DialUncertain(DialError):
    """The request failed before the provider's answer arrived (connection lost, timeout): the
    provider may or may not be dialing."""


@dataclass(frozen=True)
class OutboundCall:
    """One call to place: who to phone from which number, and where the answered audio goes.

    `answer_url` is set for dialers that fetch their instructions from this service
    (`needs_answer_url`); the others are given the `join_url` directly. `status_url` (when
    PUBLIC_BASE_URL is set) is where the provider reports the call's progress and end.
    """

    to_number: str
    from_number: str
    join_url: str
    ring_timeout_seconds: int
    answer_url: str | None = None
    status_url: str | None = None


@dataclass(frozen=True)
class Dialed:
    """The provider accepted the call and is dialing; `call_id` is its id for the call."""

    call_id: str


class Dialer(ABC):
    """One provider's outbound calling. Built once at start-up when its settings are present,
    with the executor that runs blocking SDK requests off the event loop."""

    name: ClassVar[str]
    # Whether the provider fetches the stream instructions from an answer URL on this service.
    needs_answer_url: ClassVar[bool] = False

    def __init__(self, settings: ServiceSettings, executor: Executor) -> None:
        self._executor = executor

    @staticmethod
    @abstractmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        """The settings this dialer needs that are not set; empty when it can be built."""

    @staticmethod
    @abstractmethod
    def default_from(settings: ServiceSettings) -> str | None:
        """The caller number used when a request gives none."""

    @abstractmethod
    async def dial(self, call: OutboundCall) -> Dialed:
        """Ask the provider to place `call`; `DialRefused` or `DialUncertain` when it does not."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the SDK's connections."""

    async def run_blocking(self, blocking: Callable[[], T]) -> T:
        """Run a blocking SDK request on the outbound executor, never on the event loop, so
        inbound webhooks are answered while it waits."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, blocking)


class PerThreadClients(Generic[T]):
    """One SDK client per executor thread, for SDKs whose clients keep per-request state and
    are not thread-safe; `close_all` releases every client's connections."""

    def __init__(self, new_client: Callable[[], T], close: Callable[[T], None]) -> None:
        self._new_client = new_client
        self._close = close
        self._local = threading.local()
        self._all: list[T] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        client: T | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
            with self._lock:
                self._all.append(client)
        return client

    def close_all(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            self._close(client)
