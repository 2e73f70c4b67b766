"""The web call limits, in memory and in a real Redis shared by two replicas."""

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from app.client_address import client_key
from app.web.limits import MemoryLimits, RedisLimits
from tests.redis_server import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    limits = MemoryLimits(clock)
    assert [await limits.take("k", 2, 0.5) for _ in range(3)] == [0, 0, 2.0]
    clock.now += 2
    assert await limits.take("k", 2, 0.5) == 0
    assert await limits.take("other", 2, 0.5) == 0


async def test_memory_slots_free_when_they_expire_or_are_released() -> None:
    clock = Clock()
    limits = MemoryLimits(clock)
    assert await limits.hold_slot("live", "a", 2, 60) == 0
    clock.now += 10
    assert await limits.hold_slot("live", "b", 2, 60) == 0
    assert await limits.hold_slot("live", "c", 2, 60) == 50
    await limits.release_slot("live", "b")
    assert await limits.hold_slot("live", "c", 2, 60) == 0
    clock.now += 51
    assert await limits.hold_slot("live", "d", 2, 60) == 0


async def test_memory_records_expire_and_keep_their_expiry_when_replaced() -> None:
    clock = Clock()
    limits = MemoryLimits(clock)
    await limits.put("call:a", "live", 60)
    clock.now += 30
    await limits.replace("call:a", "ended")
    await limits.replace("call:missing", "ended")
    assert await limits.get("call:a") == "ended"
    assert await limits.get("call:missing") is None
    clock.now += 31
    assert await limits.get("call:a") is None


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[tuple[RedisLimits, RedisLimits]]:
    first = RedisLimits(redis_url, timeout_seconds=1)
    second = RedisLimits(redis_url, timeout_seconds=1)
    yield first, second
    await first.close()
    await second.close()


async def test_replicas_share_buckets_slots_and_token_marks(
    replicas: tuple[RedisLimits, RedisLimits],
) -> None:
    first, second = replicas
    assert await first.take("client:198.51.100.7", 2, 1 / 60) == 0
    assert await second.take("client:198.51.100.7", 2, 1 / 60) == 0
    wait = await first.take("client:198.51.100.7", 2, 1 / 60)
    assert 59 < wait <= 60
    assert await first.hold_slot("live", "a", 1, 30) == 0
    assert 29 < await second.hold_slot("live", "b", 1, 30) <= 30
    await first.release_slot("live", "a")
    assert await second.hold_slot("live", "b", 1, 30) == 0
    assert await first.first_use("token:sig", 60) is True
    assert await second.first_use("token:sig", 60) is False


async def test_replicas_share_call_records_and_replacing_keeps_the_expiry(
    replicas: tuple[RedisLimits, RedisLimits], redis_url: str
) -> None:
    first, second = replicas
    await first.put("call:a", "live", 30)
    assert await second.get("call:a") == "live"
    await second.replace("call:a", "ended")
    await second.replace("call:missing", "ended")
    assert await first.get("call:a") == "ended"
    assert await first.get("call:missing") is None
    client = redis.Redis.from_url(redis_url)
    try:
        assert 29_000 < await client.pttl("bridge:web:call:a") <= 30_000
    finally:
        await client.aclose()


async def test_unreachable_redis_keeps_limits_in_the_process() -> None:
    before = REGISTRY.get_sample_value("bridge_store_errors_total", {"operation": "web_limits"})
    limits = RedisLimits(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2)
    try:
        assert await limits.take("client:x", 1, 1 / 60) == 0
        assert await limits.take("client:x", 1, 1 / 60) > 59
        assert await limits.first_use("token:t", 60) is True
        assert await limits.first_use("token:t", 60) is False
        await limits.put("call:a", "live", 60)
        assert await limits.get("call:a") == "live"
    finally:
        await limits.close()
    after = REGISTRY.get_sample_value("bridge_store_errors_total", {"operation": "web_limits"})
    assert after == (before or 0) + 6


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        (None, "unknown"),
    ],
)
def test_a_client_is_its_address_or_its_ipv6_64(address: str | None, key: str) -> None:
    assert client_key(address) == key
