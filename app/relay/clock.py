"""Time for the pacer, injectable so tests can drive it frame by frame."""

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock the pacer reads and sleeps on."""

    def now(self) -> float:
        """Seconds on a monotonic scale (never goes back, unaffected by wall-clock changes)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `now()` has reached `deadline` (at once if it already has)."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`, the same scale asyncio's own timers use."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
