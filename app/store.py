"""Short-lived shared records (pending sessions, single-use references), kept with an expiry.

The in-process store serves one worker; the Redis store (app/redis_store.py, imported only when
REDIS_URL is set) lets replicas see each other's records."""

import heapq
import time
from abc import ABC, abstractmethod
from collections.abc import Callable


class StoreError(Exception):
    """The shared store could not be reached or did not answer in time. Callers carry on without
    it: a call must never fail because of the cache."""


class Store(ABC):
    """Key-value records that expire. Values are strings (JSON where a structure is needed)."""

    @abstractmethod
    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        """Keep `value` under `key` for `ttl_seconds`, replacing any earlier value."""

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """The value under `key`, or None when absent or expired."""

    @abstractmethod
    async def take(self, key: str) -> str | None:
        """Remove and return the value under `key` atomically: a second `take` gets None."""

    @abstractmethod
    async def claim(self, key: str, value: str, ttl_seconds: float) -> str | None:
        """Put `value` under `key` for `ttl_seconds` only if no live record is there, atomically.
        Returns None when this caller now holds the key, otherwise the value already there."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and records; the store is not used afterwards."""


class MemoryStore(Store):
    """Records in this process's memory, for a single worker. Expired records are dropped as
    new ones arrive, oldest expiry first, so memory stays bounded by the live records."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, tuple[str, float]] = {}
        self._expiries: list[tuple[float, str]] = []

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            until, key = heapq.heappop(self._expiries)
            record = self._records.get(key)
            if record is not None and record[1] == until:
                del self._records[key]

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        now = self._clock()
        self._purge(now)
        until = now + ttl_seconds
        self._records[key] = (value, until)
        heapq.heappush(self._expiries, (until, key))

    async def get(self, key: str) -> str | None:
        record = self._records.get(key)
        if record is None or record[1] <= self._clock():
            return None
        return record[0]

    async def take(self, key: str) -> str | None:
        value = await self.get(key)
        self._records.pop(key, None)
        return value

    async def claim(self, key: str, value: str, ttl_seconds: float) -> str | None:
        # `get` and `put` never suspend, so no other task can claim between the check and the put.
        current = await self.get(key)
        if current is not None:
            return current
        await self.put(key, value, ttl_seconds)
        return None

    async def close(self) -> None:
        self._records.clear()
        self._expiries.clear()
