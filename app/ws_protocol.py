"""uvicorn's sans-I/O WebSocket protocol, with each received message handed to the app for less.

The relayed calls' media sockets (`/{provider}/media`) receive a small message every 20 ms per
call, and every one crosses from uvicorn's protocol to the app's task. uvicorn hands it over in an
`asyncio.Queue` (about 19 Python calls each way, bench/relay_call_count.py) and stops reading the
socket after every message until the app has taken it: two changes to the event loop's
interest in the socket per message, which with uvloop are `epoll_ctl` calls. At 100 calls whose
frames arrive in the same instant, that work is what keeps the pacers' timers waiting
(docs/benchmarks-relay.md). Here the hand-over is a deque and a future, and reading pauses only
once the messages waiting for the app cost `MAX_UNREAD_BYTES` (payload and overhead): the same
bound on what a client can make the worker hold, as bytes instead of a count of one.
"""

import asyncio
from collections import deque
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

# The ASGI scope extension through which the app sends a binary message without awaiting:
# `scope["extensions"][SEND_BYTES_NOWAIT](data)` sends it and returns True, or returns False
# when the message must go through the ASGI `send` (the socket not open, or its buffer full).
SEND_BYTES_NOWAIT = "ultravox_bridge.send_bytes_nowait"

# The largest message a client may send (uvicorn's default is 16 MiB, which a peer could make
# each connection hold). The media sockets' messages are 20 ms frames and short JSON events;
# a second of 48 kHz audio is under 100 KiB. A larger one closes the socket with 1009.
MAX_MESSAGE_BYTES = 1024 * 1024

# Messages received but not yet read by the app, in bytes, past which the socket is not read
# until the app catches up. A media socket carries a few KiB a second; a message over the limit
# still pauses reading at once, as uvicorn does after every message.
MAX_UNREAD_BYTES = 64 * 1024
# What a message costs the worker besides its payload, counted toward `MAX_UNREAD_BYTES`: its
# dict, its payload object's header and its deque slots (about 230 bytes). Without it an empty
# message, 6 bytes on the wire, would count as nothing and a flood of them would never pause.
MESSAGE_OVERHEAD_BYTES = 256


class Inbox:
    """The messages received and not yet read by the app, with what they cost: the part of
    `asyncio.Queue` uvicorn uses (`put_nowait`, `get`, `empty`), without bounds, task counting or
    putters. Getters wait in order; a cancelled one passes its wake-up on."""

    __slots__ = ("_getters", "_loop", "_messages", "_sizes", "unread_bytes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._messages: deque[Any] = deque()
        self._sizes: deque[int] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self.unread_bytes = 0

    def put_nowait(self, message: Any) -> None:
        data = message.get("bytes") or message.get("text") or b""
        size = len(data) + MESSAGE_OVERHEAD_BYTES
        self._messages.append(message)
        self._sizes.append(size)
        self.unread_bytes += size
        getters = self._getters
        while getters:  # `_wake_next`, inline: this runs for every message
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def empty(self) -> bool:
        return not self._messages

    async def get(self) -> Any:
        messages = self._messages
        while not messages:
            getter = self._loop.create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                if getter in self._getters:
                    self._getters.remove(getter)
                elif messages:
                    self._wake_next()  # it had been woken for a message it will not take
                raise
        self.unread_bytes -= self._sizes.popleft()
        return messages.popleft()

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol with `Inbox` for its queue, reading paused only
    past `MAX_UNREAD_BYTES`, and the `SEND_BYTES_NOWAIT` extension. Everything else (handshake,
    frames, limits, keepalive pings, closing) is uvicorn's."""

    queue: Inbox  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox(self.loop)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if not self.close_sent:  # the upgrade is valid: uvicorn made the scope for the app
            extensions = cast(dict[str, Any], self.scope["extensions"])
            extensions[SEND_BYTES_NOWAIT] = self.send_bytes_nowait

    def send_bytes_nowait(self, data: bytes) -> bool:
        """Sends a binary message as the ASGI `send` would, if it could without waiting or
        refusing: the socket accepted and open, its write buffer below the high-water mark.
        Returns whether it did; if not, `send` says why."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        try:
            self.conn.send_binary(data)
        except InvalidState:  # the peer's close frame came first
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def send_receive_event_to_app(self) -> None:
        # uvicorn pauses reading after each message unless it is paused already: say it is, and
        # pause here only if the app is that far behind. Past the app's close, never: uvicorn
        # discards what arrives then and reads on, for the peer's close reply.
        paused = self.read_paused
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not paused and not self.close_sent and self.queue.unread_bytes > MAX_UNREAD_BYTES:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.unread_bytes <= MAX_UNREAD_BYTES // 2:
            self.read_paused = False
            self.transport.resume_reading()
        return message
