"""Playing queued agent audio out to the platform at the speed a caller hears it.

Two ways, chosen by the platform: `PacedSender` keeps a 20 ms grid itself (Vonage plays each
message as it arrives and only buffers a little, so bursts sound choppy); `FlowSender` hands whole
frames over as fast as the platform accepts them (Asterisk times playback itself and says when
to stop with MEDIA_XOFF)."""

import math
from collections.abc import Awaitable, Callable

from app.relay.audio import FRAME_SECONDS, FrameQueue
from app.relay.clock import Clock

SendAudio = Callable[[bytes], Awaitable[None]]


class PacedSender:
    """Sends one frame per grid point, the grid anchored when audio starts, so timing never
    drifts however long the agent speaks: frame n goes at `anchor + n * 20 ms`, not 20 ms after
    the previous send. If the worker stalls past a grid point it resumes at the next one ahead
    instead of catching up with a burst."""

    def __init__(
        self,
        queue: FrameQueue,
        send: SendAudio,
        clock: Clock,
        on_underrun: Callable[[], None] = lambda: None,
        on_lateness: Callable[[float], None] = lambda seconds: None,
        frame_seconds: float = FRAME_SECONDS,
    ) -> None:
        self._queue = queue
        self._send = send
        self._clock = clock
        self._on_underrun = on_underrun
        self._on_lateness = on_lateness
        self._frame_seconds = frame_seconds
        self.sent = 0  # frames, each its own message (the relay's metric)

    async def run(self) -> None:
        step = self._frame_seconds
        next_at: float | None = None  # the grid point of the next frame; None while idle
        last_sent_at: float | None = None
        starved = False  # the last grid point found less than a frame queued
        while True:
            if next_at is None:
                await self._queue.wait_for_audio()
                now = self._clock.now()
                # A new utterance starts now, but never closer than one frame to the last one.
                next_at = now if last_sent_at is None else max(now, last_sent_at + step)
            await self._clock.sleep_until(next_at)
            frame = self._queue.pop_frame()
            if frame is None:
                if len(self._queue) and not starved:
                    # Part of a frame: the rest may arrive within a frame time; wait one step.
                    starved = True
                    next_at += step
                    continue
                frame = self._queue.pop_padded()
                if frame is None:
                    next_at = None  # nothing queued (played out or cleared): idle
                    starved = False
                    continue
            elif starved:
                self._on_underrun()  # the rest of the frame came, a frame time late
            starved = False
            self._on_lateness(self._clock.now() - next_at)
            await self._send(frame)
            self.sent += 1
            last_sent_at = next_at
            next_at += step
            now = self._clock.now()
            if now > next_at:
                next_at += math.ceil((now - next_at) / step) * step


class FlowSender:
    """Hands whole frames to a platform that times playback itself, as many per message as fit,
    pausing while the platform says its queue is full."""

    def __init__(
        self,
        queue: FrameQueue,
        send: SendAudio,
        clock: Clock,
        writable: Callable[[], Awaitable[None]],
        max_message_bytes: int,
        on_underrun: Callable[[], None] = lambda: None,
        frame_seconds: float = FRAME_SECONDS,
    ) -> None:
        self._queue = queue
        self._send = send
        self._clock = clock
        self._writable = writable
        self._max_message_bytes = max(queue.frame_size, max_message_bytes)
        self._on_underrun = on_underrun
        self._frame_seconds = frame_seconds
        self.sent = 0  # messages, each of one or more whole frames (the relay's metric)

    async def run(self) -> None:
        while True:
            await self._queue.wait_for_audio()
            await self._writable()
            chunk = self._queue.pop_frames(self._max_message_bytes)
            if not chunk:
                # Less than a frame queued: give the rest of it one frame time to arrive, then
                # pad it, since the platform drops a trailing part-frame.
                await self._clock.sleep_until(self._clock.now() + self._frame_seconds)
                chunk = self._queue.pop_frames(self._max_message_bytes)
                if chunk:
                    self._on_underrun()
                else:
                    chunk = self._queue.pop_padded() or b""
                if not chunk:
                    continue
                await self._writable()
            await self._send(chunk)
            self.sent += 1
