"""The pooled transport: requests spread over small pools, answers unchanged."""

import asyncio

import httpx
import pytest
import respx

from app.http_transport import PooledTransport

URL = "https://ultravox.test/api/calls"


async def test_concurrent_requests_go_to_the_least_busy_pools_and_get_their_answers() -> None:
    transport = PooledTransport(httpx.Limits(max_connections=16, max_keepalive_connections=8), 4)
    release, all_arrived = asyncio.Event(), asyncio.Event()
    arrived = 0

    async def held_answer(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 8:
            all_arrived.set()
        await release.wait()
        return httpx.Response(201, json={"n": int(request.headers["n"])})

    with respx.mock(assert_all_called=True) as router:
        router.post(URL).mock(side_effect=held_answer)
        async with httpx.AsyncClient(transport=transport) as client:
            sends = [asyncio.create_task(client.post(URL, headers={"n": str(n)})) for n in range(8)]
            await asyncio.wait_for(all_arrived.wait(), timeout=5)
            busy = list(transport._in_flight)
            release.set()
            answers = await asyncio.gather(*sends)

    assert busy == [2, 2, 2, 2]
    assert [answer.json() for answer in answers] == [{"n": n} for n in range(8)]
    assert transport._in_flight == [0, 0, 0, 0]


def test_pools_share_the_limits_and_one_tls_context() -> None:
    transport = PooledTransport(httpx.Limits(max_connections=200, max_keepalive_connections=50))
    pools = transport._pools
    assert len(pools) == 8
    assert {pool._pool._max_connections for pool in pools} == {25}
    assert {pool._pool._max_keepalive_connections for pool in pools} == {7}
    assert len({id(pool._pool._ssl_context) for pool in pools}) == 1


def test_at_least_one_pool() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PooledTransport(httpx.Limits(), pools=0)
