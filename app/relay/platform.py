"""A platform's media socket, as the relay sees it: caller audio and digits in, agent audio and
a clear command out. Each platform's module implements it for its own protocol."""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.relay.audio import frame_bytes
from app.ws_protocol import SEND_BYTES_NOWAIT


class PlatformClosed(Exception):
    """The platform closed its socket: the caller hung up or the call was ended."""


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """s16le mono audio from the caller, at the platform's sample rate."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class Digit:
    """A DTMF key the caller pressed."""

    digit: str


PlatformEvent = CallerAudio | Digit | None

SOCKET_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


class PlatformMedia(ABC):
    """One call's media socket on a platform, already accepted and past its opening message."""

    # Whether the platform times playback itself (then it gets frames as fast as it takes them).
    paces_playback = False
    # The server's way to send a message without awaiting (app/ws_protocol.py), if it has one.
    _send_bytes_nowait: Callable[[bytes], bool] | None = None

    def __init__(self, websocket: WebSocket, provider: str, sample_rate: int) -> None:
        self.websocket = websocket
        self.provider = provider
        self.sample_rate = sample_rate
        self.frame_size = frame_bytes(sample_rate)
        # Platforms that pace themselves take several frames per message.
        self.max_message_bytes = self.frame_size
        # One message at a time, in the order they were started: a frame the player already
        # began sending must not land after a clear command issued just behind it.
        self._sending = asyncio.Lock()
        extensions = websocket.scope.get("extensions") or {}
        self._send_bytes_nowait = extensions.get(SEND_BYTES_NOWAIT)

    async def receive(self) -> PlatformEvent:
        """The next caller audio or digit; None for messages the relay does not use.
        `PlatformClosed` once the socket is closed. Audio needs nothing of the platform's own
        class: it stays on this path, which runs for every caller frame."""
        try:
            message = await self.websocket.receive()
        except SOCKET_ERRORS as exc:
            raise PlatformClosed(str(exc)) from exc
        data = message.get("bytes")
        if data is not None:
            return CallerAudio(data)
        if message["type"] == "websocket.disconnect":
            raise PlatformClosed(f"closed with code {message.get('code')}")
        text = message.get("text") or ""
        assert isinstance(text, str)
        return self._text_event(text)

    def _text_event(self, text: str) -> PlatformEvent:
        """What a text message from the platform (an event, an answer to a command) means to
        the relay: a digit, or None, as here, for one it does not use."""
        return None

    async def send_audio(self, audio: bytes) -> None:
        """Play agent audio: one frame (or whole frames where the platform paces itself)."""
        # The lock without `async with`, whose two extra coroutines per frame were a good part
        # of the send (bench/relay_call_count.py); the message as `send_bytes` builds it.
        sending = self._sending
        await sending.acquire()
        try:
            await self.websocket.send({"type": "websocket.send", "bytes": audio})
        except SOCKET_ERRORS as exc:
            raise PlatformClosed(str(exc)) from exc
        finally:
            sending.release()

    def send_audio_nowait(self, audio: bytes) -> bool:
        """Plays agent audio at once, from a timer's callback, if the socket takes it without
        waiting and no other message is being sent (it must not overtake one); returns whether
        it did. If not, `send_audio` must."""
        send = self._send_bytes_nowait
        if send is None or self._sending.locked():
            return False
        return send(audio)

    @abstractmethod
    async def clear(self) -> None:
        """Drop agent audio the platform has queued but not played yet."""

    @abstractmethod
    async def hang_up(self) -> None:
        """End the call from our side and close the socket."""

    async def writable(self) -> None:  # noqa: B027 - most platforms have no flow control
        """Return once the platform accepts more audio (flow control)."""

    async def _send_text(self, text: str) -> None:
        try:
            async with self._sending:
                await self.websocket.send_text(text)
        except SOCKET_ERRORS as exc:
            raise PlatformClosed(str(exc)) from exc

    async def _close(self, code: int = 1000) -> None:
        with contextlib.suppress(*SOCKET_ERRORS):  # already closed by the other side
            await self.websocket.close(code)
