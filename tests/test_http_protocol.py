"""Request-read deadlines and the connection cap, against a real uvicorn server on loopback
configured as `ultravox-bridge serve` configures it."""

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from app import server
from app.config import Settings
from app.http_protocol import MAX_HEAD_BYTES
from app.server import uvicorn_config
from app.ws_protocol import MAX_MESSAGE_BYTES, SEND_BYTES_NOWAIT
from tests.conftest import make_settings, running_app

HOST = "127.0.0.1"
# Scheduling on a shared machine: how late a deadline may fire and still be "on time".
MARGIN_SECONDS = 1.5


def quick_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": HOST,
        "http_head_timeout_seconds": 0.5,
        "http_body_timeout_seconds": 0.5,
    }
    values.update(overrides)
    return make_settings(**values)


@asynccontextmanager
async def serving(app: FastAPI, settings: Settings) -> AsyncIterator[int]:
    """`app` served by uvicorn with the service's configuration; yields the port."""
    config = uvicorn_config(app, settings)
    config.port = 0  # any free port
    config.lifespan = "off"  # the caller ran it (see `running_app`)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@asynccontextmanager
async def bridge(settings: Settings) -> AsyncIterator[int]:
    async with running_app(settings) as client, serving(client.app, settings) as port:  # type: ignore[attr-defined]
        yield port


async def read_until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), within)
    return data, time.monotonic() - started


async def get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bridge.test\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout() -> None:
    async with bridge(quick_settings()) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        data, closed_after = await read_until_closed(reader, 0.5 + MARGIN_SECONDS)
        writer.close()
    assert data == b""  # no request was begun: nothing to answer
    assert closed_after >= 0.4


async def test_a_partial_request_head_gets_408_within_the_head_timeout() -> None:
    async with bridge(quick_settings()) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge.test\r\n")
        data, closed_after = await read_until_closed(reader, 0.5 + MARGIN_SECONDS)
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert data.endswith(b"\r\n\r\nrequest read timed out\n")
    assert closed_after >= 0.4


async def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_deadline() -> None:
    # Each byte arrives before the last one is stale: only a deadline for the head stops it.
    async with bridge(quick_settings()) as port:
        reader, writer = await asyncio.open_connection(HOST, port)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: bridge.test\r\nX-Slow: " + b"a" * 100:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(trickle())
        data, closed_after = await read_until_closed(reader, 0.5 + MARGIN_SECONDS)
        sender.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert closed_after >= 0.4


async def test_a_slow_body_gets_408_within_the_body_timeout() -> None:
    async with bridge(quick_settings()) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(
            b"POST /twilio/incoming HTTP/1.1\r\nHost: bridge.test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"CallSid=CA"
        )
        data, closed_after = await read_until_closed(reader, 0.5 + MARGIN_SECONDS)
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert closed_after >= 0.4


async def test_the_next_request_on_a_keep_alive_connection_has_a_head_deadline_too() -> None:
    async with bridge(quick_settings(http_keep_alive_seconds=30)) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge.test\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        data, _ = await read_until_closed(reader, 0.5 + MARGIN_SECONDS)
        writer.close()
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.startswith(b"HTTP/1.1 408 ")


async def test_a_request_within_the_deadlines_is_answered() -> None:
    async with bridge(quick_settings()) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: bridge.test\r\n", b"\r\n"):
            writer.write(part)
            await asyncio.sleep(0.1)
        data = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_request_head_over_the_size_limit_is_refused() -> None:
    async with bridge(quick_settings(http_head_timeout_seconds=30)) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n")
        data, _ = await read_until_closed(reader, 5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_healthz_answers_while_more_idle_connections_than_the_cap_are_open() -> None:
    settings = quick_settings(http_head_timeout_seconds=60, http_max_connections=20)
    async with bridge(settings) as port:
        idle = [await asyncio.open_connection(HOST, port) for _ in range(50)]
        answer = await get(port, "/healthz")
        # The oldest idle connections were closed to make room, the newest are still open.
        await asyncio.sleep(0.2)
        closed = [reader.at_eof() for reader, _ in idle]
        for _, writer in idle:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert closed[:30] == [True] * 30
    assert closed[-10:] == [False] * 10


async def test_healthz_answers_while_more_slow_bodies_than_the_cap_are_open() -> None:
    # A connection part way through its body is not waiting for a request head; if only those
    # could be closed, a cap's worth of slow bodies would lock every new connection out until
    # the body deadline, and the attacker would simply send the next wave.
    settings = quick_settings(http_body_timeout_seconds=60, http_max_connections=20)
    async with bridge(settings) as port:
        slow = []
        for _ in range(30):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(
                b"POST /twilio/incoming HTTP/1.1\r\nHost: bridge.test\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n"
                b"\r\nCallSid=CA"
            )
            await writer.drain()
            slow.append((reader, writer))
        await asyncio.sleep(0.2)  # every head in, every body begun
        answer = await get(port, "/healthz")
        await asyncio.sleep(0.2)
        closed = [reader.at_eof() for reader, _ in slow]
        for _, writer in slow:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    # The oldest slow bodies were closed to make room, the newest are still being read.
    assert closed[:11] == [True] * 11
    assert closed[-10:] == [False] * 10


@pytest.mark.parametrize("path", ["/twilio/incoming", "/vonage/events", "/calls"])
async def test_a_body_the_client_cuts_off_is_logged_as_one_refusal_not_a_traceback(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Anyone can send a head and half a body and hang up, thousands of times a second: each
    # must cost a short warning at most, never an ERROR with a 5 kB traceback.
    settings = quick_settings(bridge_api_tokens="a-bridge-api-token-of-16+-chars")
    async with bridge(settings) as port:
        _reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: bridge.test\r\n"
            "Authorization: Bearer a-bridge-api-token-of-16+-chars\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            "CallSid=CA".encode()
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)  # the app sees the disconnect
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


async def test_a_websocket_outlives_the_read_deadlines() -> None:
    app = FastAPI()

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.send_text(await websocket.receive_text())

    async with (
        serving(app, quick_settings()) as port,
        websockets.connect(f"ws://{HOST}:{port}/echo") as socket,
    ):
        await asyncio.sleep(1.2)  # past both deadlines
        await socket.send("still here")
        reply = await asyncio.wait_for(socket.recv(), 2)
    assert reply == "still here"


async def test_a_websocket_on_the_services_server_can_send_without_awaiting() -> None:
    app = FastAPI()

    @app.websocket("/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        send_now = websocket.scope["extensions"][SEND_BYTES_NOWAIT]
        for n in range(3):
            assert send_now(bytes([n]) * 640)
        await websocket.send_bytes(await websocket.receive_bytes())

    async with (
        serving(app, quick_settings()) as port,
        websockets.connect(f"ws://{HOST}:{port}/media") as socket,
    ):
        await socket.send(b"\x09" * 640)
        received = [await asyncio.wait_for(socket.recv(), 2) for _ in range(4)]
    assert received == [bytes([n]) * 640 for n in (0, 1, 2, 9)]


async def test_a_websocket_message_over_a_mebibyte_closes_the_socket_with_1009() -> None:
    app = FastAPI()

    @app.websocket("/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(str(len(await websocket.receive_bytes())))

    async with (
        serving(app, quick_settings()) as port,
        websockets.connect(f"ws://{HOST}:{port}/media", max_size=None) as socket,
    ):
        await socket.send(bytes(MAX_MESSAGE_BYTES))
        assert await asyncio.wait_for(socket.recv(), 5) == str(MAX_MESSAGE_BYTES)
        await socket.send(bytes(MAX_MESSAGE_BYTES + 1))
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_connection_cap_is_lowered_to_what_the_descriptor_limit_leaves(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert server.connection_cap(800) == 800
    assert caplog.records == []
    assert server.connection_cap(1000) == 1024 - server.RESERVED_DESCRIPTORS
    assert [record.msg for record in caplog.records] == ["startup.connection_cap_lowered"]
