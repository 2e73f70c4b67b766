"""An httpx transport that sends requests through aiohttp.

The Ultravox client keeps httpx's API (requests, responses, exceptions, timeouts); only the
bytes travel through aiohttp's HTTP/1.1 stack, which costs the service's CPU about a fifth of
what httpx's own transport does (anyio's cancel scopes and httpcore's pool bookkeeping on
every I/O step; see docs/benchmarks.md). aiohttp is a dependency of the twilio SDK already.

The answer is read here, to the end, within the answer-size cap (app/http_transport.py): no
answer is read or decoded past `max_bytes`, and httpx gets one response with its body in memory,
decoded (aiohttp's own decompression is off). What httpx does above its transport still happens
in httpx: redirects (not followed unless asked), cookies and proxies from the environment
(httpx mounts its own transports for them). aiohttp's errors become the httpx exceptions httpx's
own transport raises, so callers tell a connection that never opened (`httpx.ConnectError`,
`httpx.ConnectTimeout`: safe to retry) from one that broke after the request was sent.

What is the same from request to request is worked out once: the aiohttp form of a URL and of a
set of headers is kept (a bounded cache each), so a request costs aiohttp's own work and little
else.
"""

import functools
import ssl
from collections.abc import Mapping

import aiohttp
import httpx
from yarl import URL

from app.http_transport import (
    ACCEPT_ENCODING,
    MAX_RESPONSE_BYTES,
    CappedBody,
    asks_for_other_encodings,
)

# httpx has set these (or chose not to): aiohttp must not add its own.
_HTTPX_DECIDES = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")

# Distinct URLs and header sets remembered (a created call's differ in Content-Length alone).
_CACHED = 256


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests over one `aiohttp.ClientSession`, holding at most
    `limits.max_connections` connections, idle ones for `limits.keepalive_expiry` seconds, and
    reading no answer past `max_bytes` (`ResponseTooLarge`, the connection closed).

    The session is opened on the first request, inside the event loop that uses it."""

    def __init__(
        self,
        limits: httpx.Limits,
        *,
        max_bytes: int = MAX_RESPONSE_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._limits = limits
        self._max_bytes = max_bytes
        # httpx's default context (certifi's CA bundle), so both transports trust the same.
        self._tls = tls if tls is not None else httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=self._tls,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # decoded within the cap, here
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                skip_auto_headers=_HTTPX_DECIDES,
                trust_env=False,  # httpx chose this transport after applying proxies
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        data = await request.aread()
        try:
            response = await session.request(
                request.method,
                _url(str(request.url)),
                headers=_headers(tuple(request.headers.raw)),
                data=data or None,
                allow_redirects=False,  # httpx follows redirects when asked to
                timeout=_timeout(request.extensions.get("timeout", {})),
            )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, request) from exc
        try:
            headers = response.headers
            body = CappedBody(
                request,
                self._max_bytes,
                headers.get("Content-Length"),
                ", ".join(headers.getall("Content-Encoding", ())),
            )
            stream = response.content
            while chunk := await stream.readany():
                body.add(chunk)
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, request) from exc
        finally:
            # Read to the end, the connection is kept for the next request; otherwise closed.
            response.release()
        version = response.version or aiohttp.HttpVersion11
        return httpx.Response(
            response.status,
            headers=body.headers(response.raw_headers),
            content=body.content(),
            extensions={
                "http_version": f"HTTP/{version.major}.{version.minor}".encode(),
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=_CACHED)
def _url(url: str) -> URL:
    return URL(url, encoded=True)  # httpx has quoted it already


@functools.lru_cache(maxsize=_CACHED)
def _headers(raw: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[str, str], ...]:
    """httpx's headers as aiohttp takes them, in the same order; asking only for the encodings
    decoded within the cap."""
    headers: list[tuple[str, str]] = []
    for name, value in raw:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        if key.lower() == "accept-encoding" and asks_for_other_encodings(text):
            text = ACCEPT_ENCODING
        headers.append((key, text))
    return tuple(headers)


def _timeout(given: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's four timeouts in aiohttp's terms. aiohttp's `connect` covers both the wait for a
    free connection (httpx's `pool`) and opening one; it has no write timeout."""
    pool, connect, read = given.get("pool"), given.get("connect"), given.get("read")
    acquire = None if pool is None or connect is None else pool + connect
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


def _httpx_error(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception that means what aiohttp's `exc` means."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # opening, or waiting for a connection
        return httpx.ConnectTimeout(str(exc) or "connect timed out", request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # SocketTimeoutError: no bytes within `read`
        return httpx.ReadTimeout(str(exc) or "read timed out", request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(str(exc), request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # an answer that is not HTTP
        return httpx.RemoteProtocolError(exc.message, request=request)
    if isinstance(exc, aiohttp.ClientOSError):  # reset after the connection opened
        return httpx.ReadError(str(exc), request=request)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(str(exc), request=request)
    return httpx.TransportError(str(exc), request=request)
