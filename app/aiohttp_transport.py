"""An httpx transport that sends requests through aiohttp.

The Ultravox client keeps httpx's API (requests, responses, exceptions, timeouts); only the
bytes travel through aiohttp's HTTP/1.1 stack, which costs the service's CPU about a fifth of
what httpx's own transport does (anyio's cancel scopes and httpcore's pool bookkeeping on
every I/O step; see docs/benchmarks.md). aiohttp is a dependency of the twilio SDK already.

What httpx does above its transport still happens in httpx: redirects (not followed unless
asked), cookies, response decoding (aiohttp's own decompression is off) and proxies from the
environment (httpx mounts its own transports for them). aiohttp's errors become the httpx
exceptions httpx's own transport raises, so callers tell a connection that never opened
(`httpx.ConnectError`, `httpx.ConnectTimeout`: safe to retry) from one that broke after the
request was sent.
"""

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from yarl import URL

# httpx has set these (or chose not to): aiohttp must not add its own.
_HTTPX_DECIDES = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Re-raise aiohttp's errors as the httpx exceptions that mean the same thing."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:  # opening, or waiting for a free connection
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except aiohttp.ServerTimeoutError as exc:  # SocketTimeoutError: no bytes within `read`
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS handshake
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # an answer that is not HTTP
        raise httpx.RemoteProtocolError(exc.message, request=request) from exc
    except aiohttp.ClientOSError as exc:  # reset after the connection opened
        raise httpx.ReadError(str(exc), request=request) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc), request=request) from exc


class _ResponseStream(httpx.AsyncByteStream):
    """An aiohttp response's body, as httpx reads it; closing it frees the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests over one `aiohttp.ClientSession`, holding at most
    `limits.max_connections` connections, idle ones for `limits.keepalive_expiry` seconds.

    The session is opened on the first request, inside the event loop that uses it."""

    def __init__(self, limits: httpx.Limits, *, tls: ssl.SSLContext | None = None) -> None:
        self._limits = limits
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
                auto_decompress=False,  # httpx decodes, as with its own transport
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                skip_auto_headers=_HTTPX_DECIDES,
                trust_env=False,  # httpx chose this transport after applying proxies
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        body = await request.aread()
        with _httpx_errors(request):
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx has quoted it already
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body or None,
                allow_redirects=False,  # httpx follows redirects when asked to
                timeout=_timeout(request),
            )
        version = response.version or aiohttp.HttpVersion11
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response, request),
            extensions={
                "http_version": f"HTTP/{version.major}.{version.minor}".encode(),
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's four timeouts in aiohttp's terms. aiohttp's `connect` covers both the wait for a
    free connection (httpx's `pool`) and opening one; it has no write timeout."""
    given: dict[str, float | None] = request.extensions.get("timeout", {})
    pool, connect, read = given.get("pool"), given.get("connect"), given.get("read")
    acquire = None if pool is None or connect is None else pool + connect
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)
