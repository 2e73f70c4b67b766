"""The HTTP transport for outgoing requests (Ultravox): several small connection pools.

httpcore's pool re-examines every connection it holds, twice per request, with a quadratic
step for idle ones (encode/httpcore#1035). Its cost per request therefore grows with the number
of open connections: with 50 Ultravox requests in flight it took about 60% of the service's CPU
(see docs/benchmarks.md). Spreading requests over several pools of a few connections each keeps
every scan short, and each pool is still an ordinary httpx transport (proxies from the
environment, TLS settings and test mocks at the httpcore level all apply unchanged).
"""

import math

import httpx


class PooledTransport(httpx.AsyncBaseTransport):
    """Sends each request through the least busy of `pools` httpx transports, which together
    hold at most `limits` connections."""

    def __init__(self, limits: httpx.Limits, pools: int = 8) -> None:
        if pools < 1:
            raise ValueError("pools must be at least 1")
        share = httpx.Limits(
            max_connections=_share(limits.max_connections, pools),
            max_keepalive_connections=_share(limits.max_keepalive_connections, pools),
            keepalive_expiry=limits.keepalive_expiry,
        )
        # One TLS context for all: each would otherwise load the CA bundle again (about
        # 0.5 MiB and a few milliseconds of start-up apiece).
        tls = httpx.create_ssl_context()
        self._pools = [httpx.AsyncHTTPTransport(verify=tls, limits=share) for _ in range(pools)]
        self._in_flight = [0] * pools

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        self._in_flight[index] += 1
        try:
            return await self._pools[index].handle_async_request(request)
        finally:
            # Counted until the headers arrive; Ultravox's small JSON body follows at once.
            self._in_flight[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def _share(total: int | None, parts: int) -> int | None:
    return None if total is None else max(1, math.ceil(total / parts))
