"""The service's WebSocket protocol (app/ws_protocol.py): uvicorn's sans-I/O protocol with a
cheaper hand-over of received messages, reading paused only once the app is 64 KiB behind, and a
way to send a binary message without awaiting. Driven byte for byte by the websockets library's
own client protocol, through a transport that records what the server does to the socket."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from app.ws_protocol import (
    MAX_UNREAD_BYTES,
    MESSAGE_OVERHEAD_BYTES,
    SEND_BYTES_NOWAIT,
    Inbox,
    LeanWebSocketProtocol,
)


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class RecordingTransport(asyncio.Transport):
    """A socket's transport as the protocol sees it: what it wrote, whether reading is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.pauses = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@dataclass
class App:
    """An ASGI app that accepts the socket and leaves reading to the test."""

    scope: dict[str, Any] = field(default_factory=dict)
    receive: Any = None
    send: Any = None
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    accept: bool = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        assert (await receive())["type"] == "websocket.connect"
        if self.accept:
            await send({"type": "websocket.accept"})
            self.accepted.set()
        await self.done.wait()


@dataclass
class Connection:
    server: LeanWebSocketProtocol
    transport: RecordingTransport
    client: ClientProtocol
    app: App

    def client_sends(self, data: bytes) -> None:
        self.client.send_binary(data)
        self.server.data_received(b"".join(self.client.data_to_send()))

    def client_receives(self) -> list[Frame]:
        self.client.receive_data(bytes(self.transport.written))
        self.transport.written.clear()
        return [event for event in self.client.events_received() if isinstance(event, Frame)]


@asynccontextmanager
async def connection(app: App) -> AsyncIterator[Connection]:
    config = uvicorn.Config(app, ws=LeanWebSocketProtocol, log_level="warning", lifespan="off")
    config.load()
    server = LeanWebSocketProtocol(config, ServerState(), app_state={})
    transport = RecordingTransport()
    server.connection_made(transport)
    client = ClientProtocol(parse_uri("ws://bridge.test/vonage/media"))
    client.send_request(client.connect())
    server.data_received(b"".join(client.data_to_send()))
    await settle()
    conn = Connection(server, transport, client, app)
    if app.accept:
        await asyncio.wait_for(app.accepted.wait(), 1)
        client.receive_data(bytes(transport.written))
        transport.written.clear()
        (response,) = client.events_received()
        assert isinstance(response, Response) and response.status_code == 101
    try:
        yield conn
    finally:
        app.done.set()
        server.connection_lost(None)
        await settle()


async def test_messages_reach_the_app_in_order_and_reading_pauses_only_64_kib_behind() -> None:
    async with connection(App()) as conn:
        message = bytes(1000)
        cost = len(message) + MESSAGE_OVERHEAD_BYTES
        behind = MAX_UNREAD_BYTES // cost
        for n in range(behind):
            conn.client_sends(bytes([n % 256]) * len(message))
        assert conn.transport.reading  # 52 messages, 65,312 bytes unread: within the limit
        conn.client_sends(b"\xff" * len(message))
        assert not conn.transport.reading and conn.transport.pauses == 1
        assert conn.server.queue.unread_bytes == (behind + 1) * cost

        # The app reads: reading resumes once it is no more than half the limit behind.
        received = []
        while not conn.transport.reading:
            received.append(await conn.app.receive())
        assert conn.server.queue.unread_bytes <= MAX_UNREAD_BYTES // 2
        assert conn.server.queue.unread_bytes > MAX_UNREAD_BYTES // 2 - cost
        while not conn.server.queue.empty():
            received.append(await conn.app.receive())
        assert [m["bytes"][0] for m in received] == [n % 256 for n in range(behind)] + [0xFF]
        assert {m["type"] for m in received} == {"websocket.receive"}
        assert conn.transport.pauses == 1 and conn.server.queue.unread_bytes == 0


async def test_a_message_over_the_limit_pauses_reading_until_the_app_takes_it() -> None:
    async with connection(App()) as conn:
        conn.client_sends(bytes(MAX_UNREAD_BYTES + 1))
        assert not conn.transport.reading
        message = await conn.app.receive()
        assert message == {"type": "websocket.receive", "bytes": bytes(MAX_UNREAD_BYTES + 1)}
        assert conn.transport.reading


@pytest.mark.parametrize("accepted", [True, False], ids=["accepted", "before-accept"])
async def test_a_flood_of_empty_messages_pauses_reading_as_well(accepted: bool) -> None:
    # An empty message is 6 bytes on the wire but a dict and two deque slots in the worker
    # (about 200 bytes). Counted as nothing, a client that sends them faster than the app reads
    # is never paused; nor is one that sends them right behind its upgrade request, while the
    # app is still deciding whether to accept it.
    empty_binary_frame = b"\x82\x80" + b"\x00\x00\x00\x00"  # FIN, binary; masked, no payload
    async with connection(App(accept=accepted)) as conn:
        sent = 0
        while conn.transport.reading and sent < 10_000:
            conn.server.data_received(empty_binary_frame)
            sent += 1
        assert not conn.transport.reading
        assert sent == MAX_UNREAD_BYTES // MESSAGE_OVERHEAD_BYTES + 1
        assert len(conn.server.queue._messages) == sent


async def test_reading_stays_on_after_the_app_closes_until_the_clients_close_arrives() -> None:
    # uvicorn resumes reading when the app sends its close, and discards what arrives after it,
    # so that the client's close reply is read and the closing handshake ends at once.
    async with connection(App()) as conn:
        conn.client_sends(bytes(MAX_UNREAD_BYTES + 1))  # the app is behind: reading paused
        assert not conn.transport.reading
        await conn.app.send({"type": "websocket.close", "code": 1000})
        assert conn.transport.reading
        conn.client_sends(bytes(640))  # sent before the client saw the close: discarded
        assert conn.transport.reading
        unread = conn.server.queue._messages
        assert [message["type"] for message in unread] == [
            "websocket.receive",
            "websocket.disconnect",
        ]
        (close,) = conn.client_receives()  # the client answers the close frame with its own
        assert close.opcode is Opcode.CLOSE
        conn.server.data_received(b"".join(conn.client.data_to_send()))
        assert conn.transport.closed and conn.server.close_timer is None


async def test_a_text_message_and_the_close_reach_the_app() -> None:
    async with connection(App()) as conn:
        conn.client.send_text(b'{"event":"websocket:dtmf"}')
        conn.client.send_close(1000)
        conn.server.data_received(b"".join(conn.client.data_to_send()))
        assert await conn.app.receive() == {
            "type": "websocket.receive",
            "text": '{"event":"websocket:dtmf"}',
        }
        assert await conn.app.receive() == {
            "type": "websocket.disconnect",
            "code": 1000,
            "reason": "",
        }


async def test_send_bytes_nowait_sends_one_binary_frame_while_the_socket_is_open() -> None:
    async with connection(App()) as conn:
        send_now = conn.app.scope["extensions"][SEND_BYTES_NOWAIT]
        assert send_now(b"\x01\x02" * 320) is True
        (frame,) = conn.client_receives()
        assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == b"\x01\x02" * 320

        conn.server.pause_writing()  # the socket's buffer is full: the app must await `send`
        assert send_now(b"\x03" * 640) is False
        conn.server.resume_writing()
        assert send_now(b"\x04" * 640) is True
        assert [frame.data for frame in conn.client_receives()] == [b"\x04" * 640]

        await conn.app.send({"type": "websocket.close", "code": 1000})
        conn.client_receives()
        assert send_now(b"\x05" * 640) is False  # closing: nothing more goes out
        assert conn.client_receives() == []


async def test_send_bytes_nowait_sends_nothing_before_the_socket_is_accepted() -> None:
    app = App(accept=False)
    async with connection(app) as conn:
        assert conn.app.scope["type"] == "websocket"
        assert conn.app.scope["extensions"][SEND_BYTES_NOWAIT](b"\x01" * 640) is False
        assert conn.transport.written == b""


async def test_send_bytes_nowait_refuses_once_the_client_has_closed() -> None:
    async with connection(App()) as conn:
        send_now = conn.app.scope["extensions"][SEND_BYTES_NOWAIT]
        conn.client.send_close(1001)
        conn.server.data_received(b"".join(conn.client.data_to_send()))
        conn.transport.written.clear()
        assert send_now(b"\x01" * 640) is False
        assert conn.transport.written == b""


async def test_the_inbox_serves_waiting_readers_in_order() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await settle()
    inbox.put_nowait({"type": "websocket.receive", "bytes": b"a"})
    inbox.put_nowait({"type": "websocket.receive", "text": "bc"})
    assert await first == {"type": "websocket.receive", "bytes": b"a"}
    assert await second == {"type": "websocket.receive", "text": "bc"}
    assert inbox.empty() and inbox.unread_bytes == 0


async def test_a_reader_cancelled_after_its_wake_up_passes_the_message_on() -> None:
    inbox = Inbox(asyncio.get_running_loop())
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await settle()
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    first.cancel()  # woken, but cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == {"type": "websocket.disconnect", "code": 1000}
    assert inbox.empty()
