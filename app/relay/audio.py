"""Agent audio waiting to be played, cut into the platform's exact frame size."""

import asyncio

# Every platform here takes 20 ms frames (Vonage requires exactly one per message).
FRAME_SECONDS = 0.02
SAMPLE_BYTES = 2  # s16le mono


def frame_bytes(sample_rate: int) -> int:
    """Bytes in one 20 ms frame of s16le mono audio: 640 at 16 kHz, 320 at 8 kHz."""
    return int(sample_rate * FRAME_SECONDS) * SAMPLE_BYTES


class FrameQueue:
    """A byte queue that hands out whole frames. Ultravox sends agent audio in chunks of any
    size, often far ahead of real time; platforms need it in frames of one exact size."""

    def __init__(self, frame_size: int) -> None:
        self.frame_size = frame_size
        self._buffer = bytearray()
        self._audio = asyncio.Event()
        self.clears = 0  # how many times `clear` was called: a frame taken before one is stale

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def seconds(self) -> float:
        """How much playing time is queued."""
        return len(self._buffer) / self.frame_size * FRAME_SECONDS

    def push(self, audio: bytes) -> None:
        if audio:
            self._buffer += audio
            self._audio.set()

    def pop_frame(self) -> bytes | None:
        """The next whole frame, or None when less than a frame is queued. (The pacer calls it
        for every frame, so `_settle` is written out.)"""
        buffer, size = self._buffer, self.frame_size
        if len(buffer) < size:
            return None
        frame = bytes(buffer[:size])
        del buffer[:size]
        if not buffer:
            self._audio.clear()
        return frame

    def pop_frames(self, max_bytes: int) -> bytes:
        """As many whole frames as fit in `max_bytes` (possibly none)."""
        size = min(len(self._buffer), max_bytes) // self.frame_size * self.frame_size
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._settle()
        return chunk

    def pop_padded(self) -> bytes | None:
        """What is left when it is less than a frame, padded with silence to a whole frame; the
        end of an utterance rarely falls on a frame boundary."""
        if not self._buffer:
            return None
        frame = bytes(self._buffer[: self.frame_size]).ljust(self.frame_size, b"\x00")
        del self._buffer[: self.frame_size]
        self._settle()
        return frame

    def clear(self) -> int:
        """Drop everything queued; returns how many bytes were dropped."""
        dropped = len(self._buffer)
        self.clears += 1
        self._buffer.clear()
        self._settle()
        return dropped

    async def wait_for_audio(self) -> None:
        """Return once some audio is queued."""
        await self._audio.wait()

    def _settle(self) -> None:
        if not self._buffer:
            self._audio.clear()
