"""The HTTP transports for outgoing requests (Ultravox, provider APIs): several small connection
pools, and a cap on how much of an answer is read.

httpcore's pool re-examines every connection it holds, twice per request, with a quadratic
step for idle ones (encode/httpcore#1035). Its cost per request therefore grows with the number
of open connections: with 50 Ultravox requests in flight it took about 60% of the service's CPU
(see docs/benchmarks.md). Spreading requests over several pools of a few connections each keeps
every scan short, and each pool is still an ordinary httpx transport (proxies from the
environment, TLS settings and test mocks at the httpcore level all apply unchanged).
"""

import math
from collections.abc import AsyncIterator, Callable

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


# The most this service reads of an answer from Ultravox or a provider's API. Their answers are
# a few KiB of JSON (a created call echoes its system prompt); anything near this is broken.
MAX_RESPONSE_BYTES = 1024 * 1024


class ResponseTooLarge(httpx.ReadError):
    """An upstream's answer is longer than `MAX_RESPONSE_BYTES`: it was not read to the end.

    A read error, because the request was sent: the upstream may have acted on it."""


class CappedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that no answer is read past `max_bytes`: one declaring a longer
    `Content-Length` is refused at once, and a longer body stops at the cap. Either way the
    request raises `ResponseTooLarge` and the connection is closed, not read to the end."""

    def __init__(self, transport: httpx.AsyncBaseTransport, max_bytes: int = MAX_RESPONSE_BYTES):
        self._transport = transport
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._transport.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            await response.aclose()
            raise ResponseTooLarge(self._too_large(request), request=request)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self._max_bytes, request, self._too_large),
            extensions=response.extensions,
        )

    def _too_large(self, request: httpx.Request) -> str:
        return f"the answer of {request.url.host} is over {self._max_bytes} bytes"

    async def aclose(self) -> None:
        await self._transport.aclose()


class _CappedStream(httpx.AsyncByteStream):
    def __init__(
        self,
        stream: httpx.AsyncByteStream | httpx.SyncByteStream,
        max_bytes: int,
        request: httpx.Request,
        message: Callable[[httpx.Request], str],
    ) -> None:
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("an async transport answered with a sync stream")
        self._stream = stream
        self._max_bytes = max_bytes
        self._request = request
        self._message = message

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = 0
        async for chunk in self._stream:
            read += len(chunk)
            if read > self._max_bytes:
                raise ResponseTooLarge(self._message(self._request), request=self._request)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()
