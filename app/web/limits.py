"""The abuse limits of web calls: token buckets (per client address, and for the whole
service), slots for the web calls that may still be live, single-use marks for tokens, and the
records of live web calls that let a page free its call's slot when the call ends.

With REDIS_URL set they live in Redis, so every replica counts against the same limits; each
operation is one Lua script, atomic, timed by Redis's own clock. When Redis fails, the limit is
kept in this process instead (counted in `bridge_store_errors_total{operation="web_limits"}`):
a replica then enforces the limits alone, never none."""

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app import metrics

T = TypeVar("T")

# Above this many buckets, full ones (indistinguishable from absent) are dropped.
MAX_IDLE_BUCKETS = 10_000


class Limits(ABC):
    """Where the limits are counted."""

    @abstractmethod
    async def take(self, key: str, burst: int, per_second: float) -> float:
        """Take one token from bucket `key` (holding at most `burst`, refilled at `per_second`).
        Returns 0 when taken, otherwise the seconds until a token is there."""

    @abstractmethod
    async def hold_slot(self, key: str, slot: str, cap: int, seconds: float) -> float:
        """Hold `slot` among at most `cap` slots of `key` for `seconds`. Returns 0 when held,
        otherwise the seconds until the oldest slot is freed."""

    @abstractmethod
    async def release_slot(self, key: str, slot: str) -> None:
        """Free `slot` at once (the call it was held for was never created)."""

    @abstractmethod
    async def first_use(self, key: str, seconds: float) -> bool:
        """True the first time `key` is seen within `seconds`, False on a repeat."""

    @abstractmethod
    async def put(self, key: str, value: str, seconds: float) -> None:
        """Keep `value` under `key` for `seconds`."""

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """The value kept under `key`, or None when there is none (or it expired)."""

    @abstractmethod
    async def replace(self, key: str, value: str) -> None:
        """Replace the value under `key`, keeping its expiry; nothing when there is none."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the limits are not used afterwards."""


class MemoryLimits(Limits):
    """Limits in this process's memory: one worker, or a replica whose Redis failed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float, int]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._seen: dict[str, float] = {}
        self._records: dict[str, tuple[str, float]] = {}

    async def take(self, key: str, burst: int, per_second: float) -> float:
        now = self._clock()
        tokens, updated, _, _ = self._buckets.get(key, (burst, now, per_second, burst))
        tokens = min(burst, tokens + (now - updated) * per_second)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / per_second
        self._buckets[key] = (tokens, now, per_second, burst)
        if len(self._buckets) > MAX_IDLE_BUCKETS:
            self._drop_full_buckets(now)
        return wait

    def _drop_full_buckets(self, now: float) -> None:
        full = [
            key
            for key, (tokens, updated, rate, burst) in self._buckets.items()
            if tokens + (now - updated) * rate >= burst
        ]
        for key in full:
            del self._buckets[key]

    async def hold_slot(self, key: str, slot: str, cap: int, seconds: float) -> float:
        now = self._clock()
        slots = {s: until for s, until in self._slots.get(key, {}).items() if until > now}
        self._slots[key] = slots
        if len(slots) >= cap:
            return min(slots.values()) - now
        slots[slot] = now + seconds
        return 0.0

    async def release_slot(self, key: str, slot: str) -> None:
        self._slots.get(key, {}).pop(slot, None)

    async def first_use(self, key: str, seconds: float) -> bool:
        now = self._clock()
        self._seen = {k: until for k, until in self._seen.items() if until > now}
        if key in self._seen:
            return False
        self._seen[key] = now + seconds
        return True

    async def put(self, key: str, value: str, seconds: float) -> None:
        now = self._clock()
        self._records = {k: kept for k, kept in self._records.items() if kept[1] > now}
        self._records[key] = (value, now + seconds)

    async def get(self, key: str) -> str | None:
        kept = self._records.get(key)
        return kept[0] if kept is not None and kept[1] > self._clock() else None

    async def replace(self, key: str, value: str) -> None:
        kept = self._records.get(key)
        if kept is not None:
            self._records[key] = (value, kept[1])

    async def close(self) -> None:
        self._buckets.clear()
        self._slots.clear()
        self._seen.clear()
        self._records.clear()


# KEYS[1] bucket; ARGV burst, tokens per second. Returns the wait in seconds, as text.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""

# KEYS[1] sorted set of slots scored by expiry (ms); ARGV cap, ms to hold, slot.
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2])) + 1000)
  return '0'
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring((tonumber(first[2]) - now) / 1000)
"""


class RedisLimits(Limits):
    """Limits in Redis, shared by every replica. Each operation is bounded by
    `timeout_seconds`; on failure, and for `pause_after_failure` seconds after one, the
    in-process limits answer instead."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        key_prefix: str = "bridge:web:",
        pause_after_failure: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as redis  # loaded only when REDIS_URL is set
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
        from redis.retry import Retry

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._timeout = timeout_seconds
        self._prefix = key_prefix
        self._pause_after_failure = pause_after_failure
        self._clock = clock
        self._paused_until = float("-inf")
        self._local = MemoryLimits(clock)
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
        )
        self._take = self._redis.register_script(_TAKE)
        self._hold = self._redis.register_script(_HOLD)

    async def _shared(self, action: Callable[[], Awaitable[T]]) -> T | None:
        """`action`'s result, or None when Redis failed (or failed a moment ago)."""
        if self._clock() < self._paused_until:
            metrics.STORE_ERRORS.labels(operation="web_limits").inc()
            return None
        try:
            async with asyncio.timeout(self._timeout):
                return await action()
        except self._errors:
            self._paused_until = self._clock() + self._pause_after_failure
            metrics.STORE_ERRORS.labels(operation="web_limits").inc()
            return None

    async def take(self, key: str, burst: int, per_second: float) -> float:
        keys = [self._prefix + key]
        wait = await self._shared(lambda: self._take(keys=keys, args=[burst, repr(per_second)]))
        if wait is None:
            return await self._local.take(key, burst, per_second)
        return float(wait)

    async def hold_slot(self, key: str, slot: str, cap: int, seconds: float) -> float:
        keys = [self._prefix + key]
        args: list[str | int] = [cap, max(1, round(seconds * 1000)), slot]
        wait = await self._shared(lambda: self._hold(keys=keys, args=args))
        if wait is None:
            return await self._local.hold_slot(key, slot, cap, seconds)
        return float(wait)

    async def release_slot(self, key: str, slot: str) -> None:
        await self._local.release_slot(key, slot)
        await self._shared(lambda: self._redis.zrem(self._prefix + key, slot))

    async def first_use(self, key: str, seconds: float) -> bool:
        ms = max(1, round(seconds * 1000))

        async def mark() -> bool:  # SET NX answers None for "already there": make it False
            return bool(await self._redis.set(self._prefix + key, "1", nx=True, px=ms))

        created = await self._shared(mark)
        if created is None:
            return await self._local.first_use(key, seconds)
        return bool(created)

    # Records are kept in this process too: while Redis fails, a page can still free the slot
    # of a call this replica started.
    async def put(self, key: str, value: str, seconds: float) -> None:
        await self._local.put(key, value, seconds)
        ms = max(1, round(seconds * 1000))
        await self._shared(lambda: self._redis.set(self._prefix + key, value, px=ms))

    async def get(self, key: str) -> str | None:
        async def read() -> str | None:
            value = await self._redis.get(self._prefix + key)
            return value if isinstance(value, str) else None  # decode_responses: always str

        shared = await self._shared(read)
        return shared if shared is not None else await self._local.get(key)

    async def replace(self, key: str, value: str) -> None:
        await self._local.replace(key, value)
        await self._shared(
            lambda: self._redis.set(self._prefix + key, value, xx=True, keepttl=True)
        )

    async def close(self) -> None:
        await self._redis.aclose()
