"""The Redis store: records shared by every replica, for de-duplication and pending sessions.
Imported only when REDIS_URL is set, so a single-replica service does not load the client."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from app import metrics
from app.store import Store, StoreError

T = TypeVar("T")

# SET NX and, when the key is taken, GET in one atomic step (one round trip, any Redis version).
_CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""


class RedisStore(Store):
    """Records in Redis, shared by every replica. Each operation is bounded by `timeout_seconds`
    and never retried. After a failure, operations fail at once for `pause_after_failure`
    seconds, so a hung Redis costs one webhook the timeout, not every webhook. Every failure is
    counted and raised as `StoreError`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        key_prefix: str = "bridge:",
        pause_after_failure: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_seconds
        self._prefix = key_prefix
        self._pause_after_failure = pause_after_failure
        self._clock = clock
        self._paused_until = float("-inf")
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
        )
        self._claim = self._redis.register_script(_CLAIM_SCRIPT)

    async def _run(self, operation: str, action: Callable[[], Awaitable[T]]) -> T:
        if self._clock() < self._paused_until:
            metrics.STORE_ERRORS.labels(operation=operation).inc()
            raise StoreError(
                f"Redis {operation} not tried: Redis failed in the last "
                f"{self._pause_after_failure:g}s"
            )
        try:
            async with asyncio.timeout(self._timeout):
                return await action()
        except (RedisError, OSError, TimeoutError) as exc:
            self._paused_until = self._clock() + self._pause_after_failure
            metrics.STORE_ERRORS.labels(operation=operation).inc()
            raise StoreError(f"Redis {operation} failed: {exc!r}") from exc

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        await self._run(
            "put", lambda: self._redis.set(self._prefix + key, value, px=_ms(ttl_seconds))
        )

    async def get(self, key: str) -> str | None:
        return _text(await self._run("get", lambda: self._redis.get(self._prefix + key)))

    async def take(self, key: str) -> str | None:
        return _text(await self._run("take", lambda: self._redis.getdel(self._prefix + key)))

    async def claim(self, key: str, value: str, ttl_seconds: float) -> str | None:
        keys = [self._prefix + key]
        current: str | None = await self._run(
            "claim", lambda: self._claim(keys=keys, args=[value, _ms(ttl_seconds)])
        )
        return current

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: bytes | str | None) -> str | None:
    # The client decodes responses; bytes appear only in the type hints of redis-py.
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
