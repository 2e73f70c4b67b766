"""The stores' contract, claims included, on the in-process store and on a real Redis."""

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import REGISTRY

from app.redis_store import RedisStore
from app.store import MemoryStore, StoreError
from tests.redis_server import RedisServer, free_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store_errors(operation: str) -> float:
    value = REGISTRY.get_sample_value("bridge_store_errors_total", {"operation": operation})
    return value or 0.0


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, timeout_seconds=1)
    yield store
    await store.close()


async def test_memory_claim_is_held_until_it_expires() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)

    assert await store.claim("k", "first", ttl_seconds=5) is None
    assert await store.claim("k", "second", ttl_seconds=5) == "first"
    clock.now += 5
    assert await store.claim("k", "third", ttl_seconds=5) is None
    assert await store.get("k") == "third"


async def test_memory_claim_after_take_succeeds() -> None:
    store = MemoryStore(FakeClock())
    await store.put("k", "v", ttl_seconds=5)

    assert await store.take("k") == "v"
    assert await store.claim("k", "mine", ttl_seconds=5) is None


async def test_redis_put_get_take(redis_store: RedisStore) -> None:
    await redis_store.put("k", "value", ttl_seconds=10)

    assert await redis_store.get("k") == "value"
    assert await redis_store.take("k") == "value"
    assert await redis_store.take("k") is None
    assert await redis_store.get("k") is None


async def test_redis_claim_returns_the_holders_value(redis_store: RedisStore) -> None:
    assert await redis_store.claim("k", "first", ttl_seconds=10) is None
    assert await redis_store.claim("k", "second", ttl_seconds=10) == "first"
    assert await redis_store.get("k") == "first"


async def assert_one_concurrent_claim_wins(store: MemoryStore | RedisStore) -> None:
    results = await asyncio.gather(
        *(store.claim("k", f"claimant-{n}", ttl_seconds=10) for n in range(20))
    )

    winners = [n for n, held in enumerate(results) if held is None]
    assert len(winners) == 1
    assert set(results) == {None, f"claimant-{winners[0]}"}
    assert await store.get("k") == f"claimant-{winners[0]}"


async def test_memory_concurrent_claims_have_one_winner() -> None:
    # The check and the put must not be split by a suspension, or every claimant wins.
    await assert_one_concurrent_claim_wins(MemoryStore())


async def test_redis_concurrent_claims_have_one_winner(redis_store: RedisStore) -> None:
    await assert_one_concurrent_claim_wins(redis_store)


async def test_redis_records_expire(redis_store: RedisStore) -> None:
    await redis_store.put("put", "v", ttl_seconds=0.1)
    assert await redis_store.claim("claimed", "v", ttl_seconds=0.1) is None
    await asyncio.sleep(0.25)

    assert await redis_store.get("put") is None
    assert await redis_store.claim("claimed", "again", ttl_seconds=10) is None


async def test_redis_keys_are_prefixed(redis_url: str) -> None:
    one = RedisStore(redis_url, timeout_seconds=1, key_prefix="one:")
    two = RedisStore(redis_url, timeout_seconds=1, key_prefix="two:")
    try:
        await one.put("k", "from one", ttl_seconds=10)
        assert await two.get("k") is None
        assert await one.get("k") == "from one"
    finally:
        await one.close()
        await two.close()


async def test_unreachable_redis_raises_store_error_and_is_counted() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    before = {op: store_errors(op) for op in ("put", "get", "take", "claim")}
    try:
        with pytest.raises(StoreError, match=r"Redis put failed: .*ConnectionError"):
            await store.put("k", "v", ttl_seconds=1)
        with pytest.raises(StoreError, match="Redis get not tried"):
            await store.get("k")
        with pytest.raises(StoreError, match="Redis take not tried"):
            await store.take("k")
        with pytest.raises(StoreError, match="Redis claim not tried"):
            await store.claim("k", "v", ttl_seconds=1)
    finally:
        await store.close()

    assert {op: store_errors(op) - before[op] for op in before} == {
        "put": 1,
        "get": 1,
        "take": 1,
        "claim": 1,
    }


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers, like a hung Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_redis_that_never_answers_times_out_then_pauses(silent_server: int) -> None:
    clock = FakeClock()
    store = RedisStore(
        f"redis://127.0.0.1:{silent_server}/0",
        timeout_seconds=0.2,
        pause_after_failure=1,
        clock=clock,
    )
    before = store_errors("claim")
    try:
        async with asyncio.timeout(5):  # the test's own bound, far above the store's
            with pytest.raises(StoreError, match=r"Redis claim failed: .*TimeoutError"):
                await store.claim("k", "v", ttl_seconds=1)
            clock.now += 0.9
            with pytest.raises(StoreError, match="Redis claim not tried"):
                await store.claim("k", "v", ttl_seconds=1)
            clock.now += 0.1
            with pytest.raises(StoreError, match=r"Redis claim failed: .*TimeoutError"):
                await store.claim("k", "v", ttl_seconds=1)
    finally:
        await store.close()

    assert store_errors("claim") - before == 3


async def test_redis_is_used_again_after_the_pause() -> None:
    clock = FakeClock()
    port = free_port()
    store = RedisStore(
        f"redis://127.0.0.1:{port}/0", timeout_seconds=1, pause_after_failure=1, clock=clock
    )
    server = None
    try:
        with pytest.raises(StoreError, match="Redis put failed"):
            await store.put("k", "v", ttl_seconds=10)
        server = RedisServer(port)
        with pytest.raises(StoreError, match="Redis put not tried"):
            await store.put("k", "v", ttl_seconds=10)
        clock.now += 1
        await store.put("k", "v", ttl_seconds=10)
        assert await store.get("k") == "v"
    finally:
        await store.close()
        if server is not None:
            server.stop()
