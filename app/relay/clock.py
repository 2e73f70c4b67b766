"""Time for the pacer, injectable so tests can drive it frame by frame."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class Timer(Protocol):
    """A callback `Clock.call_at` scheduled."""

    def cancel(self) -> None:
        """The callback is not run (if it has not been already)."""
        ...


class Clock(Protocol):
    """A monotonic clock the pacer reads and sleeps on."""

    def now(self) -> float:
        """Seconds on a monotonic scale (never goes back, unaffected by wall-clock changes)."""
        ...

    def sleep_until(self, deadline: float) -> Awaitable[None]:
        """Awaited, returns once `now()` has reached `deadline` (at once if it already has)."""
        ...

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Timer:
        """Runs `callback` from the event loop once `now()` has reached `deadline`."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`, the same scale asyncio's own timers use. The pacer
    reads it twice and sleeps on it once per frame of every call, so both take the least
    Python: `now` is the C function itself, and a sleep is a future a timer completes (what
    `asyncio.sleep` awaits, without a coroutine around it)."""

    now = staticmethod(time.monotonic)

    def sleep_until(self, deadline: float) -> "asyncio.Future[None]":
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        delay = deadline - time.monotonic()
        if delay > 0:
            loop.call_later(delay, _wake, woken)
        else:
            woken.set_result(None)
        return woken

    def call_at(self, deadline: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(deadline - time.monotonic(), callback)


def _wake(woken: "asyncio.Future[None]") -> None:
    # Cancelled if the task awaiting it was: then there is nothing to wake. (Unlike a cancelled
    # `asyncio.sleep`'s, the timer stays until it falls due: within a frame time, for the
    # relay's sleeps.)
    if not woken.done():
        woken.set_result(None)
