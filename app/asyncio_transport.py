"""An httpx transport on asyncio's own connections and httptools' HTTP/1.1 parser.

The Ultravox client keeps httpx's API (requests, responses, exceptions, timeouts); only the
bytes travel here. A request is written as one buffer (the head httpx built, then its body), and
the answer is parsed by httptools (the C parser uvicorn reads requests with) straight from the
event loop's `data_received`, decoded within the answer-size cap (`CappedBody`,
app/http_transport.py) as it arrives. No task, stream reader or lock stands between the socket
and the caller: a webhook's Ultravox request costs about a fifth of the Python calls aiohttp's
client took (docs/benchmarks.md).

What it does not do, because the service's requests never need it: HTTP/2, upgrades (101),
`Expect: 100-continue` (an interim answer is skipped), pipelining (one request per connection
at a time), a write timeout (a request is handed to the socket whole; the read timeout runs from
there), outgoing proxies (requests go straight to their host; `HTTPS_PROXY` is not read, as it
was not by the aiohttp transport before). What httpx does above its transport still happens in
httpx: redirects (not followed unless asked), cookies.
Errors are the httpx exceptions httpx's own transport raises, so callers tell a connection that
never opened (`httpx.ConnectError`, `httpx.ConnectTimeout`, `httpx.PoolTimeout`: safe to retry)
from one that broke after the request was sent.
"""

import asyncio
import collections
import re
import ssl
from collections.abc import Callable
from typing import cast

import httptools
import httpx

from app.http_transport import (
    ACCEPT_ENCODING,
    MAX_RESPONSE_BYTES,
    CappedBody,
    ResponseTooLarge,
    asks_for_other_encodings,
)

# scheme, host, port: the connections that can serve a request.
Origin = tuple[bytes, bytes, int]

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
# The most an answer's status line and headers may take (httptools sets no limit). What else is
# not body, a chunked body's framing and trailers, may take as much again as the body itself.
MAX_HEAD_BYTES = 64 * 1024
# An HTTP method is a token (RFC 9110 5.6.2).
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class AsyncioTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests over keep-alive HTTP/1.1 connections: at most
    `limits.max_connections` open (a request waits up to its `pool` timeout for one, then
    `httpx.PoolTimeout`), at most `limits.max_keepalive_connections` of them idle, each idle
    for at most `limits.keepalive_expiry` seconds. No answer is read past `max_bytes`
    (`ResponseTooLarge`, the connection closed)."""

    def __init__(
        self,
        limits: httpx.Limits,
        *,
        max_bytes: int = MAX_RESPONSE_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._max_open = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._keepalive = limits.keepalive_expiry
        self._max_bytes = max_bytes
        # httpx's default context (certifi's CA bundle), so both transports trust the same.
        self._tls = tls if tls is not None else httpx.create_ssl_context()
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._open: set[_Connection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shut = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._shut:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        port = url.port or _DEFAULT_PORTS.get(scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(
                f"cannot send a request to {scheme.decode('ascii', 'replace')!r} URLs",
                request=request,
            )
        message = _message(request, await request.aread())
        timeouts = request.extensions.get("timeout", {})
        connection = await self._acquire((scheme, url.raw_host, port), request, timeouts)
        reusable = False
        try:
            response = await connection.exchange(
                request, message, timeouts.get("read"), self._max_bytes
            )
            reusable = connection.reusable
            return response
        finally:
            self._release(connection, reusable)

    async def aclose(self) -> None:
        """Closes every connection; requests waiting for one, and any sent from now on, get a
        `RuntimeError`."""
        self._shut = True
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the transport is closed"))

    # The pool.

    async def _acquire(
        self, origin: Origin, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> "_Connection":
        loop = asyncio.get_running_loop()
        pool = timeouts.get("pool")
        deadline = None if pool is None else loop.time() + pool
        while True:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                self._idle_count -= 1
                if connection.usable(loop.time(), self._keepalive):
                    return connection
                connection.close()
            if self._max_open is None or len(self._open) + self._opening < self._max_open:
                return await self._connect(origin, request, timeouts.get("connect"))
            if self._close_oldest_idle():
                continue
            await self._wait_for_room(request, None if deadline is None else deadline - loop.time())

    async def _wait_for_room(self, request: httpx.Request, seconds: float | None) -> None:
        """Until a connection closes or goes idle, for at most `seconds`."""
        if seconds is not None and seconds <= 0:
            raise httpx.PoolTimeout("no free connection in time", request=request)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: the next waiter takes the place
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no free connection in time", request=request) from None
            raise

    async def _connect(
        self, origin: Origin, request: httpx.Request, seconds: float | None
    ) -> "_Connection":
        scheme, host, port = origin
        name = host.decode("ascii")
        tls = self._tls if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        self._opening += 1
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, self._forget),
                    name,
                    port,
                    ssl=tls,
                    server_hostname=name if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {name}:{port} timed out", request=request
            ) from None
        except OSError as exc:  # DNS, refused, unreachable, the TLS handshake
            raise httpx.ConnectError(
                f"cannot connect to {name}:{port}: {exc}", request=request
            ) from exc
        finally:
            self._opening -= 1
            if connection is None:
                self._wake()  # the place it held is free
        if self._shut:  # closed while this one was opening
            connection.close()
            raise RuntimeError("the transport is closed")
        if not connection.closed:  # (closed already, it has left the pool)
            self._open.add(connection)
        return connection

    def _release(self, connection: "_Connection", reusable: bool) -> None:
        if reusable and not connection.closed:
            now = asyncio.get_running_loop().time()
            if self._max_idle is not None and self._idle_count >= self._max_idle:
                self._close_expired(now)  # an origin asked for no more keeps its places
            if self._max_idle is None or self._idle_count < self._max_idle:
                connection.idle_since = now
                self._idle.setdefault(connection.origin, []).append(connection)
                self._idle_count += 1
                self._wake()
                return
        connection.close()

    def _forget(self, connection: "_Connection") -> None:
        """A connection closed (by either side): its place in the pool is free, and its place
        among the idle ones if it was idle (the server's close)."""
        if connection in self._open:
            self._open.discard(connection)
            idle = self._idle.get(connection.origin)
            if idle and connection in idle:
                idle.remove(connection)
                self._idle_count -= 1
            self._wake()

    def _close_expired(self, now: float) -> None:
        """The idle connections past their keep-alive expiry closed, of every origin (each
        origin's idle connections are in the order they went idle)."""
        if self._keepalive is None:
            return
        for idle in self._idle.values():
            while idle and now - idle[0].idle_since >= self._keepalive:
                idle.pop(0).close()
                self._idle_count -= 1

    def _close_oldest_idle(self) -> bool:
        """Room for a connection to another origin: the longest-idle one closed."""
        oldest: _Connection | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest.idle_since):
                oldest = connections[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].remove(oldest)
        self._idle_count -= 1
        oldest.close()
        return True

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time, its answer parsed as it arrives."""

    def __init__(self, origin: Origin, on_close: Callable[["_Connection"], None]) -> None:
        self.origin = origin
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reusable = False
        # The exchange in progress: None while idle.
        self._answer: asyncio.Future[httpx.Response] | None = None
        self._request: httpx.Request | None = None
        self._max_bytes = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: CappedBody | None = None
        self._until_close = False
        self._wire_bytes = 0  # the answer's bytes as received, body and all else
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def usable(self, now: float, keepalive: float | None) -> bool:
        if self.closed or self._transport is None or self._transport.is_closing():
            return False  # (closing: the server's end seen, the callback not yet run)
        return keepalive is None or now - self.idle_since < keepalive

    async def exchange(
        self, request: httpx.Request, data: bytes, read_timeout: float | None, max_bytes: int
    ) -> httpx.Response:
        """Writes `data` (the request) and returns the answer, read whole."""
        if self.closed or self._transport is None:
            raise httpx.RemoteProtocolError("the server closed the connection", request=request)
        loop = self._loop
        answer: asyncio.Future[httpx.Response] = loop.create_future()
        self._answer = answer
        self._request = request
        self._max_bytes = max_bytes
        self._headers = []
        self._body = None
        self._until_close = False
        self._wire_bytes = 0
        self.reusable = False
        self._transport.write(data)
        if read_timeout is not None:
            self._last_read = loop.time()
            self._timer = loop.call_at(self._last_read + read_timeout, self._time_out, read_timeout)
        try:
            return await answer
        finally:
            # Nothing of the exchange is kept while the connection waits idle: the request (its
            # body, its headers) and the answer's parts are the caller's to let go.
            self._answer = None
            self._request = None
            self._body = None
            self._headers = []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._closed()

    # asyncio's callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not subclasses of asyncio's, only alike)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # bytes no request asked for: the connection cannot be trusted
            return
        if self._timer is not None:
            self._last_read = self._loop.time()
        self._wire_bytes += len(data)
        try:
            self._parser.feed_data(data)
            # Not body: the status line and headers (httptools holds a header line whole, however
            # long), then a chunked body's sizes, extensions and trailers.
            body = self._body
            if body is None:
                if self._wire_bytes > MAX_HEAD_BYTES:
                    message = f"the answer's headers are over {MAX_HEAD_BYTES} bytes"
                    self._fail(ResponseTooLarge(message, request=self._request))
            elif self._wire_bytes - body.received > MAX_HEAD_BYTES + body.received:
                message = (
                    f"the answer's headers, chunk framing and trailers are over {MAX_HEAD_BYTES} "
                    "bytes more than its body"
                )
                self._fail(ResponseTooLarge(message, request=self._request))
        except httptools.HttpParserCallbackError as exc:  # raised by one of the methods below
            context = exc.__context__
            self._fail(context if isinstance(context, httpx.HTTPError) else self._protocol(exc))
        except httptools.HttpParserUpgrade:
            self._fail(self._protocol("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(self._protocol(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()
        if self._answer is None or self._answer.done():
            return
        if exc is None and self._body is not None and self._until_close:
            self._complete()  # an answer without a length ends where the connection does
        elif isinstance(exc, OSError):
            self._fail(httpx.ReadError(f"connection broken: {exc}", request=self._request))
        else:
            self._fail(self._protocol("the server closed the connection before answering"))

    # httptools' callbacks.

    def on_message_begin(self) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # a second answer to one request: the connection cannot be trusted
        self._reason = b""
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._body is None:  # not a trailer: httpx's own transport drops those
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # an interim answer (100 Continue): the real one follows
        length: str | None = None
        codings: list[str] = []
        transfer: list[str] = []
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                length = value.decode("latin-1")
            elif lower == b"content-encoding":
                codings.append(value.decode("latin-1"))
            elif lower == b"transfer-encoding":
                transfer += (c.strip().lower() for c in value.decode("latin-1").split(","))
        assert self._request is not None
        head = self._request.method == "HEAD"
        if head or status in (204, 304):
            # No body follows, whatever the headers say: nothing to read or decode.
            self._body = CappedBody(self._request, self._max_bytes, None, "")
            if head:
                self._complete()  # (not reused: llhttp would wait for the length named)
            return
        if transfer and transfer != ["chunked"]:
            # (a body gzip-coded for transfer would reach httpx still coded)
            raise httpx.DecodingError(
                f"the answer's transfer coding {', '.join(transfer)[:60]!r} is not chunked",
                request=self._request,
            )
        self._body = CappedBody(self._request, self._max_bytes, length, ", ".join(codings))
        self._until_close = length is None and not transfer

    def on_body(self, body: bytes) -> None:
        if self._body is not None:
            self._body.add(body)

    def on_message_complete(self) -> None:
        if self._body is None:
            return  # the end of an interim answer
        self.reusable = (
            not self._until_close
            and self._request is not None
            and self._request.method != "HEAD"
            and self._parser.should_keep_alive()
        )
        self._complete()

    # The end of an exchange.

    def _complete(self) -> None:
        answer, body = self._answer, self._body
        if answer is None or answer.done() or body is None:
            return
        content = body.content()
        headers = body.headers(self._headers)
        if headers is not self._headers:  # decoded here: the length is the decoded body's
            headers = [*headers, (b"Content-Length", b"%d" % len(content))]
        version = self._parser.get_http_version()
        response = httpx.Response(
            self._parser.get_status_code(),
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={
                "http_version": b"HTTP/" + version.encode("ascii"),
                "reason_phrase": self._reason,
            },
        )
        # The body is whole, decoded and within the cap: given to the response as read and
        # closed, as `read()` would leave it. httpx would otherwise walk the same bytes through
        # its stream, decoder and chunker generators, and a context manager per step (about 80
        # Python calls an answer, bench/call_count.py).
        response._content = content
        response.is_closed = True
        answer.set_result(response)

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        self.close()

    def _time_out(self, timeout: float) -> None:
        loop = self._loop
        quiet_until = self._last_read + timeout
        if loop.time() < quiet_until:  # bytes came since: wait from the last of them
            self._timer = loop.call_at(quiet_until, self._time_out, timeout)
            return
        self._timer = None
        self._fail(httpx.ReadTimeout(f"no answer within {timeout:g}s", request=self._request))

    def _protocol(self, reason: object) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(f"bad answer: {reason}", request=self._request)

    def _closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)


def _message(request: httpx.Request, body: bytes) -> bytes:
    """The request as it goes on the wire: the request line and headers as httpx built them, then
    the body, chunked if they say so (a body httpx did not know the length of). Refused, not
    sent: a header that would break the head (a line break or NUL in it), and a body its headers
    do not frame exactly (a Content-Length not its length, or with Transfer-Encoding), which the
    server would read into the next request or take the next request into."""
    method = request.method
    if not _METHOD.fullmatch(method):
        raise httpx.LocalProtocolError(f"{method!r} is not an HTTP method", request=request)
    raw = request.headers.raw
    parts = [method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    chunked = False
    length: bytes | None = None
    for name, value in raw:
        lower = name.lower()
        if lower == b"accept-encoding" and asks_for_other_encodings(value.decode("latin-1")):
            value = ACCEPT_ENCODING.encode("ascii")  # only what is decoded within the cap
        elif lower == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lower == b"content-length":
            if length is not None:
                raise httpx.LocalProtocolError("two Content-Length headers", request=request)
            length = value
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = len(raw) + 2
    if not (head.count(b"\r\n") == head.count(b"\r") == head.count(b"\n") == lines):
        raise httpx.LocalProtocolError("a header holds a line break", request=request)
    if b"\0" in head:
        raise httpx.LocalProtocolError("a header holds a NUL byte", request=request)
    if chunked:
        if length is not None:
            raise httpx.LocalProtocolError(
                "both Content-Length and Transfer-Encoding: chunked", request=request
            )
        return head + (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
    if (body or length is not None) and length != b"%d" % len(body):
        raise httpx.LocalProtocolError(
            f"a body of {len(body)} bytes with Content-Length {length!r}", request=request
        )
    return head + body
