"""The relay's socket to Ultravox (aiohttp's WebSocket client) when Ultravox cannot be reached,
sends more than the relay takes, or drops the connection: the call ends, the caller's side is
hung up, nothing hangs."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from app.relay import relay as relay_module
from app.relay.platform import CallerAudio, PlatformClosed, PlatformEvent, PlatformMedia
from app.relay.relay import CallIds, Relay

IDS = CallIds("vonage", "call-1", "uv-1")
FRAME = b"\x01" * 640


class ScriptedPlatform(PlatformMedia):
    """A platform whose caller sends one frame every 20 ms until hung up."""

    def __init__(self) -> None:
        self.provider = "vonage"
        self.frame_size = 640
        self.max_message_bytes = 640
        self.hung_up = asyncio.Event()
        self.played: list[bytes] = []

    async def receive(self) -> PlatformEvent:
        if self.hung_up.is_set():
            raise PlatformClosed("hung up")
        await asyncio.sleep(0.02)
        return CallerAudio(FRAME)

    async def send_audio(self, audio: bytes) -> None:
        self.played.append(audio)

    async def clear(self) -> None:
        pass

    async def hang_up(self) -> None:
        self.hung_up.set()


Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def ultravox_serving(handler: Handler, **options: object) -> AsyncIterator[str]:
    async with websockets.serve(handler, "127.0.0.1", 0, compression=None, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/calls/uv-1/join"


async def test_an_unreachable_ultravox_ends_the_call_at_once() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    platform = ScriptedPlatform()
    relay = Relay(platform, f"ws://127.0.0.1:{port}/join", IDS)
    assert await asyncio.wait_for(relay.run(), 5) == "error"
    assert platform.hung_up.is_set()


async def test_an_ultravox_that_never_answers_the_upgrade_ends_the_call_at_the_open_timeout() -> (
    None
):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the connection, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    platform = ScriptedPlatform()
    relay = Relay(platform, f"ws://127.0.0.1:{port}/join", IDS, open_timeout=0.3)
    async with server:
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(relay.run(), 5) == "error"
    assert asyncio.get_running_loop().time() - started < 2
    assert platform.hung_up.is_set()


async def test_a_message_over_the_limit_ends_the_call(monkeypatch: object) -> None:
    relay_module_limit = 64 * 1024
    monkeypatch.setattr(relay_module, "ULTRAVOX_MAX_MESSAGE_BYTES", relay_module_limit)  # type: ignore[attr-defined]

    async def flood(connection: ServerConnection) -> None:
        await connection.send(b"\x02" * 640)  # within the limit: played
        await connection.send(b"\x03" * (relay_module_limit + 1))
        await connection.wait_closed()

    platform = ScriptedPlatform()
    async with ultravox_serving(flood) as url:
        assert await asyncio.wait_for(Relay(platform, url, IDS).run(), 5) == "agent"
    assert platform.hung_up.is_set()
    assert platform.played == [b"\x02" * 640]


async def test_a_connection_dropped_without_a_close_ends_the_call() -> None:
    received = asyncio.Event()

    async def drop(connection: ServerConnection) -> None:
        await connection.recv()
        received.set()
        connection.transport.abort()  # the TCP connection goes, no close frame

    platform = ScriptedPlatform()
    async with ultravox_serving(drop) as url:
        ended_by = await asyncio.wait_for(Relay(platform, url, IDS).run(), 5)
    assert received.is_set()
    assert ended_by == "agent"
    assert platform.hung_up.is_set()


async def test_audio_far_past_the_buffer_ultravox_was_told_waits_in_the_socket(
    monkeypatch: object,
) -> None:
    """A broken Ultravox sending agent audio without end, as fast as the socket takes it: the
    relay holds no more than its bound (plus one message), instead of growing until the
    process runs out of memory; the rest waits in the socket. Such a peer never answers the
    close frame either (its answer waits behind the audio): the relay lets go after its close
    timeout, not when the peer stops sending (aiohttp's own close waits for each message)."""
    monkeypatch.setattr(relay_module, "MAX_QUEUED_SECONDS", 0.2)  # type: ignore[attr-defined]
    monkeypatch.setattr(relay_module, "ULTRAVOX_CLOSE_TIMEOUT_SECONDS", 0.5)  # type: ignore[attr-defined]
    chunk = b"\x02" * 6400  # 0.2 s of audio

    async def flood(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await connection.send(chunk)

    platform = ScriptedPlatform()
    async with ultravox_serving(flood) as url:
        relay = Relay(platform, url, IDS)
        running = asyncio.create_task(relay.run())
        peak = 0
        for _ in range(50):
            await asyncio.sleep(0.02)
            peak = max(peak, len(relay.queue))
        platform.hung_up.set()
        assert await asyncio.wait_for(running, 5) == "caller"
    assert 0 < peak <= 2 * len(chunk)
