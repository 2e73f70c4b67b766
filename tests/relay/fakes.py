"""Loopback stand-ins for the relay's two sides: a fake Ultravox socket server, the app served by
uvicorn on 127.0.0.1 (WebSockets need a real server), a clock tests advance by hand, and
webhooks signed the way Vonage signs them."""

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import uvicorn
import websockets
from fastapi import FastAPI
from websockets.asyncio.server import ServerConnection

from app.ws_protocol import LeanWebSocketProtocol
from tests.conftest import BASE_URL, CALLED, CALLER, Webhook

VONAGE_SECRET = "vonage-test-signature-secret-0123456789abcdef"
ASTERISK_TOKEN = "asterisk-test-token-0123456789abcdef"
PUBLIC_BASE_URL = "https://bridge.test"
VONAGE_UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"


async def settle(rounds: int = 30) -> None:
    """Let every ready task run until they all wait on something."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class ManualTimer:
    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A monotonic clock that moves only when the test advances it, running timers and waking
    sleepers in order of their deadlines."""

    def __init__(self) -> None:
        self.time = 0.0
        self._timers: list[ManualTimer] = []

    def now(self) -> float:
        return self.time

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.time:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_at(deadline, lambda: None if future.done() else future.set_result(None))
        await future

    def call_at(self, deadline: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(deadline, callback)
        if deadline <= self.time:  # as the event loop does: soon, without advancing the clock
            asyncio.get_running_loop().call_soon(lambda: timer.cancelled or callback())
        else:
            self._timers.append(timer)
        return timer

    def fire(self, timer: ManualTimer) -> None:
        """Runs a timer that is due (a subclass may make it late)."""
        timer.callback()

    async def advance(self, seconds: float) -> None:
        target = self.time + seconds
        await settle()
        while True:
            self._timers = [timer for timer in self._timers if not timer.cancelled]
            due = [timer for timer in self._timers if timer.deadline <= target + 1e-12]
            if not due:
                break
            timer = min(due, key=lambda timer: timer.deadline)
            self._timers.remove(timer)
            self.time = max(self.time, timer.deadline)
            self.fire(timer)
            await settle()
        self.time = max(self.time, target)
        await settle()


@dataclass
class FakeUltravox:
    """Ultravox's side of a `joinUrl` socket: records what the relay sends, sends what the test
    says."""

    url: str = ""
    audio: bytearray = field(default_factory=bytearray)
    audio_messages: int = 0
    data: list[dict[str, Any]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    socket: ServerConnection | None = None

    async def _handle(self, socket: ServerConnection) -> None:
        self.socket = socket
        self.connected.set()
        try:
            async for message in socket:
                if isinstance(message, bytes):
                    self.audio += message
                    self.audio_messages += 1
                else:
                    self.data.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def send(self, message: bytes | dict[str, Any]) -> None:
        assert self.socket is not None
        await self.socket.send(message if isinstance(message, bytes) else json.dumps(message))

    async def hang_up(self) -> None:
        assert self.socket is not None
        await self.socket.close()


@asynccontextmanager
async def fake_ultravox() -> AsyncIterator[FakeUltravox]:
    fake = FakeUltravox()
    async with websockets.serve(fake._handle, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/calls/c-1/join?token=abc"
        yield fake


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve an app whose lifespan already ran (see `running_app`) on loopback; yields its
    ws:// origin."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        ws=LeanWebSocketProtocol,  # the service's own, as `serve` runs it
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def vonage_token(
    payload: bytes = b"", secret: str = VONAGE_SECRET, issued_at: float | None = None, **claims: Any
) -> str:
    """A JWT as Vonage signs its webhooks; `payload` is what it hashes (see `signed_payload`)."""
    body: dict[str, Any] = {
        "iat": int(time.time() if issued_at is None else issued_at),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(payload).hexdigest(),
        "api_key": "a1b2c3d4",
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256")


def signed_payload(fields: dict[str, str]) -> bytes:
    """What Vonage hashes into `payload_hash`: the fields (the query's for GET, the body's for
    POST) as a JSON object without whitespace, in the order sent (Vonage support article
    19033783342876)."""
    return json.dumps(fields, separators=(",", ":")).encode()


def vonage_fields(call_id: str = VONAGE_UUID) -> dict[str, str]:
    return {
        "from": CALLER.lstrip("+"),
        "to": CALLED.lstrip("+"),
        "uuid": call_id,
        "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
    }


def vonage_webhook(
    fields: dict[str, str],
    method: str = "GET",
    path: str = "/vonage/incoming",
    token: str | None = None,
) -> Webhook:
    """Vonage's answer webhook: GET with the fields in the query, or POST with a JSON body."""
    if method == "GET":
        body = b""
        url = f"{BASE_URL}{path}?{urlencode(fields)}"
        headers = {}
    else:
        body = signed_payload(fields)
        url = BASE_URL + path
        headers = {"content-type": "application/json"}
    if token is None:
        token = vonage_token(signed_payload(fields))
    headers["Authorization"] = f"Bearer {token}"
    return Webhook(method, url, headers, body)


@dataclass
class PlatformCall:
    """A fake platform's media socket connected to the app, recording everything it receives."""

    socket: websockets.ClientConnection
    received: list[bytes | str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: "asyncio.Task[None] | None" = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.socket:
                self.received.append(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    @property
    def frames(self) -> list[bytes]:
        return [m for m in self.received if isinstance(m, bytes)]

    @property
    def texts(self) -> list[str]:
        return [m for m in self.received if isinstance(m, str)]

    async def stop(self) -> None:
        await self.socket.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)


async def eventually(condition: Any, within: float = 5.0) -> None:
    """Wait (bounded) until `condition()` holds; the loopback sockets need real time."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
