"""Failed sign-ins per client address, so the console's form cannot be used to guess tokens.

Each address (an IPv6 client's whole /64) has a bucket of FAILURES_BURST failed attempts that
refills at one per FAILURE_REFILL_SECONDS; with the bucket empty every attempt, right or wrong,
is refused with 429 and Retry-After. The buckets live in this process: N replicas allow N times
as many guesses, still hopeless against 16+ character tokens."""

import math
import time
from collections.abc import Callable

FAILURES_BURST = 10
FAILURE_REFILL_SECONDS = 60.0
# Addresses remembered at most; past it, buckets that have refilled are forgotten first, then
# the least recently failed.
MAX_CLIENTS = 10_000


class SignInAttempts:
    """Token buckets of failed sign-ins, by client key."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key: (failures left, as of)

    def _left(self, key: str, now: float) -> float:
        left, as_of = self._buckets.get(key, (FAILURES_BURST, now))
        return min(FAILURES_BURST, left + (now - as_of) / FAILURE_REFILL_SECONDS)

    def retry_after(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when it may now."""
        left = self._left(key, self._now())
        if left >= 1:
            return 0
        return max(1, math.ceil((1 - left) * FAILURE_REFILL_SECONDS))

    def failed(self, key: str) -> None:
        now = self._now()
        left = self._left(key, now)
        self._buckets.pop(key, None)  # re-inserted last: the dict's order is least recent first
        if len(self._buckets) >= MAX_CLIENTS:
            self._forget(now)
        self._buckets[key] = (max(0.0, left - 1), now)

    def _forget(self, now: float) -> None:
        refilled = [key for key in self._buckets if self._left(key, now) >= FAILURES_BURST]
        for key in refilled:
            del self._buckets[key]
        # Then the least recent tenth, so a flood of addresses costs one scan per 1,000 of them.
        while len(self._buckets) >= MAX_CLIENTS - MAX_CLIENTS // 10:
            del self._buckets[next(iter(self._buckets))]
