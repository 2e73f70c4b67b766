"""Playing queued agent audio out to the platform at the speed a caller hears it.

Two ways, chosen by the platform: `PacedSender` keeps a 20 ms grid itself (Vonage plays each
message as it arrives and only buffers a little, so bursts sound choppy); `FlowSender` hands whole
frames over as fast as the platform accepts them (Asterisk times playback itself and says when
to stop with MEDIA_XOFF)."""

import asyncio
import math
from collections.abc import Awaitable, Callable

from app.relay.audio import FRAME_SECONDS, FrameQueue
from app.relay.clock import Clock, Timer

SendAudio = Callable[[bytes], Awaitable[None]]
# Sends a frame at once, without waiting, if the platform can take it now; False if it cannot
# (then the frame goes through `SendAudio`). Raises as `SendAudio` does.
SendNow = Callable[[bytes], bool]


class PacedSender:
    """Sends one frame per grid point, the grid anchored when audio starts, so timing never
    drifts however long the agent speaks: frame n goes at `anchor + n * 20 ms`, not 20 ms after
    the previous send. If the worker stalls past a grid point it resumes at the next one ahead
    instead of catching up with a burst.

    Each grid point is a timer callback, which sends the frame itself through `send_now` when the
    platform can take it at once: the frame then leaves as the timer fires, not after every task
    the event loop has already queued (at 100 calls whose caller frames arrive together, those
    are 100 tasks). The task running `run` only waits for audio, and sends through `send` what
    `send_now` could not."""

    def __init__(
        self,
        queue: FrameQueue,
        send: SendAudio,
        clock: Clock,
        on_underrun: Callable[[], None] = lambda: None,
        on_lateness: Callable[[float], None] = lambda seconds: None,
        frame_seconds: float = FRAME_SECONDS,
        send_now: SendNow | None = None,
    ) -> None:
        self._queue = queue
        self._send = send
        self._send_now = send_now
        self._clock = clock
        self._on_underrun = on_underrun
        self._on_lateness = on_lateness
        self._frame_seconds = frame_seconds
        self.sent = 0  # frames, each its own message (the relay's metric)
        # A frame taken from the queue and not yet sent: the task's to send.
        self.holding = False
        self._held_since_clears = 0
        self._next_at: float | None = None  # the grid point of the next frame; None while idle
        self._last_sent_at: float | None = None
        self._starved = False  # the last grid point found less than a frame queued
        self._timer: Timer | None = None
        # What the timers hand the task: a frame `send_now` could not send, or None when the
        # queue ran dry.
        self._handed: asyncio.Future[bytes | None] | None = None

    async def run(self) -> None:
        step = self._frame_seconds
        try:
            while True:
                if self._next_at is None:
                    await self._queue.wait_for_audio()
                    now = self._clock.now()
                    last = self._last_sent_at
                    # A new utterance starts now, but never closer than one frame to the last.
                    self._next_at = now if last is None else max(now, last + step)
                self._handed = asyncio.get_running_loop().create_future()
                self._schedule()
                frame = await self._handed
                if frame is None:
                    continue
                if self._queue.clears != self._held_since_clears:
                    # The agent was interrupted since the timer took the frame: it is not played.
                    self.holding = False
                    self._next_at = None
                    continue
                self._on_lateness(self._clock.now() - self._next_at)
                try:
                    await self._send(frame)
                finally:
                    self.holding = False
                self._sent()
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def _schedule(self) -> None:
        assert self._next_at is not None
        self._timer = self._clock.call_at(self._next_at, self._grid_point)

    def _grid_point(self) -> None:
        """A grid point: the next frame sent, or handed to the task, or none due."""
        self._timer = None
        handed = self._handed
        if handed is None or handed.done():  # the task was cancelled
            return
        next_at = self._next_at
        assert next_at is not None
        frame = self._queue.pop_frame()
        if frame is None:
            if len(self._queue) and not self._starved:
                # Part of a frame: the rest may arrive within a frame time; wait one step.
                self._starved = True
                self._next_at = next_at + self._frame_seconds
                self._schedule()
                return
            frame = self._queue.pop_padded()
            if frame is None:
                self._next_at = None  # nothing queued (played out or cleared): idle
                self._starved = False
                handed.set_result(None)
                return
        elif self._starved:
            self._on_underrun()  # the rest of the frame came, a frame time late
        self._starved = False
        send_now = self._send_now
        lateness = self._clock.now() - next_at
        taken_since_clears = self._queue.clears
        try:
            sent = send_now is not None and send_now(frame)
        except Exception as exc:  # the platform is gone: the task ends with it
            handed.set_exception(exc)
            return
        if not sent:
            self.holding = True
            self._held_since_clears = taken_since_clears
            handed.set_result(frame)
            return
        self._on_lateness(lateness)
        self._sent()
        self._schedule()

    def _sent(self) -> None:
        """The frame of this grid point went out: on to the next grid point, skipping those the
        worker has already missed."""
        next_at = self._next_at
        assert next_at is not None
        step = self._frame_seconds
        self.sent += 1
        self._last_sent_at = next_at
        next_at += step
        now = self._clock.now()
        if now > next_at:
            next_at += math.ceil((now - next_at) / step) * step
        self._next_at = next_at


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
        # Audio taken from the queue and not yet sent.
        self.holding = False

    async def run(self) -> None:
        while True:
            await self._queue.wait_for_audio()
            await self._writable()
            chunk = self._queue.pop_frames(self._max_message_bytes)
            self.holding = bool(chunk)
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
                self.holding = True
                taken_since_clears = self._queue.clears
                await self._writable()
                if self._queue.clears != taken_since_clears:
                    # The agent was interrupted while the platform was full: not played.
                    self.holding = False
                    continue
            try:
                await self._send(chunk)
            finally:
                self.holding = False
            self.sent += 1
