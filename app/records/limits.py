"""Live-call limits: how many calls run now, globally (MAX_CONCURRENT_CALLS) and per route
(`max_concurrent_calls` in the routes file), counted across replicas through Redis when
REDIS_URL is set, in this process otherwise.

A call takes a slot when the bridge decides to create its Ultravox call. The slot is released
when the call's end is reported (Ultravox's `call.ended`, the provider's final status
callback, the relay's end), when creating the call fails, or at the latest when its deadline
passes (join timeout plus maximum duration: Ultravox has ended it by then), so a lost end
report cannot hold a slot for ever."""

import heapq
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any

from app.metrics import series
from app.records import metrics

logger = logging.getLogger("app.records")

ALL_ROUTES = "_all"


class LiveCalls(ABC):
    """The shared count of live calls."""

    def __init__(self, max_calls: int | None) -> None:
        self.max_calls = max_calls

    @abstractmethod
    async def acquire(
        self, key: str, route: str, route_limit: int | None, lifetime_seconds: float
    ) -> bool:
        """Take a slot for call `key` on `route` for at most `lifetime_seconds`; False when a
        limit is reached. Taking the slot of a call that holds one (a repeated webhook) is
        allowed and takes nothing more."""

    @abstractmethod
    async def release(self, key: str, route: str | None) -> None:
        """Give back call `key`'s slot, if it holds one."""

    async def close(self) -> None:  # noqa: B027 (only the Redis count holds connections)
        """Let go of connections."""

    def _show(self, route: str, route_count: int, total: int) -> None:
        series(metrics.LIVE_CALLS, route).set(route_count)
        series(metrics.LIVE_CALLS, ALL_ROUTES).set(total)


class MemoryLiveCalls(LiveCalls):
    """This process's calls: right for one replica. Each operation costs O(log n) in the calls
    held, not a scan of them: without end reports a slot is held until its deadline (about an
    hour), so thousands may be held at once."""

    def __init__(self, max_calls: int | None, clock: Any = time.time) -> None:
        super().__init__(max_calls)
        self._clock = clock
        self._slots: dict[str, tuple[str, float]] = {}
        self._per_route: Counter[str] = Counter()
        # (deadline, key) of every slot taken; an entry whose slot was released or taken again
        # since is stale and skipped when it comes up.
        self._deadlines: list[tuple[float, str]] = []

    def _expire(self) -> None:
        now = self._clock()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self._deadlines)
            slot = self._slots.get(key)
            if slot is not None and slot[1] == deadline:
                self._drop(key)

    def _drop(self, key: str) -> None:
        route, _ = self._slots.pop(key)
        self._per_route[route] -= 1
        if not self._per_route[route]:
            del self._per_route[route]
        self._show(route, self._per_route[route], len(self._slots))

    async def acquire(
        self, key: str, route: str, route_limit: int | None, lifetime_seconds: float
    ) -> bool:
        self._expire()
        if key in self._slots:
            return True
        over_all = self.max_calls is not None and len(self._slots) >= self.max_calls
        if over_all or (route_limit is not None and self._per_route[route] >= route_limit):
            return False
        deadline = self._clock() + lifetime_seconds
        self._slots[key] = (route, deadline)
        self._per_route[route] += 1
        heapq.heappush(self._deadlines, (deadline, key))
        self._show(route, self._per_route[route], len(self._slots))
        return True

    async def release(self, key: str, route: str | None) -> None:
        if key in self._slots:
            self._drop(key)


# Sorted sets scored by each slot's deadline: expired slots are dropped before counting, all
# in one script so that two replicas cannot both take the last slot.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {1, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[1])}
end
local all_limit = tonumber(ARGV[4])
local route_limit = tonumber(ARGV[5])
if (all_limit > 0 and redis.call('ZCARD', KEYS[1]) >= all_limit)
   or (route_limit > 0 and redis.call('ZCARD', KEYS[2]) >= route_limit) then
  return {0, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[1])}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return {1, redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[1])}
"""
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[1])}
"""
# One hash tag: every key of the count lands on the same Redis Cluster slot.
_ALL_KEY = "{bridge-live}:all"
_ROUTE_KEY = "{bridge-live}:route:"


class RedisLiveCalls(LiveCalls):
    """Every replica's calls, in the Redis of REDIS_URL. Redis unreachable: the call is let
    through (a limit is a cost guard, not worth a caller's call) and counted in
    `bridge_live_calls_errors_total`."""

    def __init__(self, url: str, max_calls: int | None, timeout_seconds: float) -> None:
        super().__init__(max_calls)
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    async def acquire(
        self, key: str, route: str, route_limit: int | None, lifetime_seconds: float
    ) -> bool:
        now = time.time()
        try:
            taken, route_count, total = await self._acquire(
                keys=[_ALL_KEY, _ROUTE_KEY + route],
                args=[now, now + lifetime_seconds, key, self.max_calls or 0, route_limit or 0],
            )
        except Exception as exc:  # any Redis failure: the call goes on, uncounted
            _unavailable("live_calls.acquire", exc)
            return True
        self._show(route, int(route_count), int(total))
        return bool(taken)

    async def release(self, key: str, route: str | None) -> None:
        if route is None:
            return
        try:
            route_count, total = await self._release(
                keys=[_ALL_KEY, _ROUTE_KEY + route], args=[key]
            )
        except Exception as exc:  # the slot expires at its deadline anyway
            _unavailable("live_calls.release", exc)
            return
        self._show(route, int(route_count), int(total))

    async def close(self) -> None:
        await self._redis.aclose()


def _unavailable(operation: str, exc: Exception) -> None:
    metrics.LIMIT_ERRORS.inc()
    logger.warning(operation + "_failed", extra={"fields": {"error": repr(exc)[:300]}})


def build_live_calls(redis_url: str | None, max_calls: int | None, timeout: float) -> LiveCalls:
    if redis_url is None:
        return MemoryLiveCalls(max_calls)
    return RedisLiveCalls(redis_url, max_calls, timeout)
