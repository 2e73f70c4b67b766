"""The asyncio transport against a real HTTP server on loopback, under asyncio's event loop and
uvloop's (conftest.py here): what goes over the wire is the request httpx built, what comes
back is an ordinary httpx response, and every failure is the httpx exception httpx's own
transport would raise (the Ultravox client's retries depend on it). Then the answer-size cap it
reads within, as the service uses it, against oversized and compressed answers."""

import asyncio
import contextlib
import gc
import gzip
import json
import time
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from app.asyncio_transport import AsyncioTransport, _Connection
from app.http_transport import MAX_RESPONSE_BYTES, ResponseTooLarge
from app.main import ultravox_transport
from app.ultravox import UltravoxClient, UltravoxConnectionError, UltravoxTransportError

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5)


@dataclass
class Received:
    line: str
    headers: list[tuple[str, str]]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Received:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = [tuple(h.split(": ", 1)) for h in head[1:] if h]
    length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
    body = await reader.readexactly(length)
    return Received(head[0], headers, body)  # type: ignore[arg-type]


def raw_headers(request: httpx.Request) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in request.headers.raw]


def answer(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Loopback:
    """A TCP server on 127.0.0.1 that runs `handler` for each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.received: list[Received] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def loopback(handler: Handler) -> AsyncIterator[tuple[Loopback, str]]:
    server = Loopback(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server, f"http://127.0.0.1:{port}"
        listener.close()


@asynccontextmanager
async def client(**kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = AsyncioTransport(kwargs.pop("limits", LIMITS))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, **kwargs) as http:  # type: ignore[arg-type]
        yield http


def serving(server_answer: bytes) -> Handler:
    """A keep-alive server giving every request the same answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            received = await read_request(reader)
            SEEN.append(received)
            writer.write(server_answer)
            await writer.drain()

    return handler


def gated(release: asyncio.Event) -> Handler:
    """A keep-alive server that answers each request only once `release` is set."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(answer("200 OK", b"{}"))
            await writer.drain()

    return handler


SEEN: list[Received] = []


@pytest.fixture(autouse=True)
def _forget_requests() -> None:
    SEEN.clear()


async def test_the_server_receives_exactly_the_request_httpx_built() -> None:
    async with loopback(serving(answer("201 Created", b"{}"))) as (_, base), client() as http:
        request = http.build_request(
            "POST",
            f"{base}/api/agents/a%2Fb%20c/calls?enableGreetingPrompt=false",
            json={"systemPrompt": "Hé", "medium": {"twilio": {}}},
            headers={"X-API-Key": "key-1"},
        )
        await http.send(request)

    (received,) = SEEN
    assert received.line == ("POST /api/agents/a%2Fb%20c/calls?enableGreetingPrompt=false HTTP/1.1")
    # The same headers, spelt and ordered the same, and nothing of aiohttp's own added.
    assert received.headers == raw_headers(request)
    assert received.body == request.content
    assert json.loads(received.body) == {"systemPrompt": "Hé", "medium": {"twilio": {}}}


async def test_a_delete_without_body_is_sent_as_httpx_built_it() -> None:
    async with loopback(serving(answer("204 No Content", b""))) as (_, base), client() as http:
        request = http.build_request("DELETE", f"{base}/api/calls/c1")
        response = await http.send(request)

    assert response.status_code == 204
    (received,) = SEEN
    assert received.line == "DELETE /api/calls/c1 HTTP/1.1"
    assert received.headers == raw_headers(request)
    assert received.body == b""


async def test_a_body_of_unknown_length_goes_chunked_as_httpx_declared() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"a":'
        yield b" 1}"

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        SEEN.append(
            Received(head.split(b"\r\n")[0].decode(), [], await reader.readuntil(b"0\r\n\r\n"))
        )
        writer.write(answer("200 OK", b"{}"))
        await writer.drain()

    async with loopback(chunked) as (_, base), client() as http:
        request = http.build_request("POST", f"{base}/api/calls", content=parts())
        assert request.headers["transfer-encoding"] == "chunked"
        assert (await http.send(request)).status_code == 200

    (received,) = SEEN
    assert received.body == b'8\r\n{"a": 1}\r\n0\r\n\r\n'


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nInjected: 1"}, {"X-Evil": "a\nb"}, {"X-Evil": "a\rb"}, {"X-Evil": "a\x00b"}],
)
async def test_a_header_that_would_break_the_head_is_refused_unsent(
    headers: dict[str, str],
) -> None:
    async with loopback(serving(answer("200 OK", b"{}"))) as (server, base), client() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.post(f"{base}/api/calls", json={}, headers=headers)
    assert SEEN == []
    assert server.connections == 0


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"Content-Length": "0"}, b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        ({"Content-Length": "100"}, b"{}"),
        ({"Content-Length": "2", "Transfer-Encoding": "chunked"}, b"{}"),
    ],
)
async def test_a_body_its_headers_do_not_frame_is_refused_unsent(
    headers: dict[str, str], content: bytes
) -> None:
    """The request's own Content-Length frames it (the Ultravox client sets it itself): one that
    disagrees with the body would have the server read the rest as another request, or the next
    request as this one's body. httpx's own transport refuses it too."""
    async with loopback(serving(answer("200 OK", b"{}"))) as (server, base), client() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.post(f"{base}/api/calls", headers=headers, content=content)
    assert SEEN == []
    assert server.connections == 0


async def test_status_headers_reason_and_body_come_back_as_an_httpx_response() -> None:
    raw = answer(
        "429 Slow Down",
        b'{"detail": "busy"}',
        "Content-Type: application/json",
        "Retry-After: 3",
        "X-Trace: one",
        "X-Trace: two",
    )
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.post(f"{base}/api/calls", json={})

    assert response.status_code == 429
    assert response.reason_phrase == "Slow Down"
    assert response.http_version == "HTTP/1.1"
    assert response.headers["retry-after"] == "3"
    assert response.headers.get_list("x-trace") == ["one", "two"]
    assert response.json() == {"detail": "busy"}


async def test_the_answer_comes_back_read_and_closed_and_reads_the_same_every_way() -> None:
    body = b'{"callId": "c-1", "systemPrompt": "' + b"x" * 2000 + b'"}'
    raw = answer("201 Created", body, "Content-Type: application/json")
    transport = AsyncioTransport(LIMITS)
    async with loopback(serving(raw)) as (_, base):
        try:
            request = httpx.Request("POST", f"{base}/api/calls", json={})
            response = await transport.handle_async_request(request)
            # As the Ultravox client takes it: already whole, nothing left to read or release.
            assert response.is_closed
            assert response.read() == body and response.content == body
            await response.aclose()
            assert response.json()["callId"] == "c-1"
            # And through httpx's client, streamed: the same bytes, in full.
            async with (
                httpx.AsyncClient(transport=transport) as http,
                http.stream("POST", f"{base}/api/calls", json={}) as streamed,
            ):
                assert b"".join([chunk async for chunk in streamed.aiter_bytes()]) == body
                assert [line async for line in streamed.aiter_lines()] == [body.decode()]
        finally:
            await transport.aclose()


async def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}')
        await writer.drain()
        writer.close()

    async with loopback(old_server) as (server, base), client() as http:
        assert (await http.get(f"{base}/x")).json() == {"a": 1}
        assert (await http.get(f"{base}/x")).json() == {"a": 1}
    assert server.connections == 2  # not kept: its end was the connection's


async def test_an_interim_answer_is_skipped_for_the_final_one() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + answer("201 Created", b'{"a": 1}')
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.post(f"{base}/api/calls", json={})
    assert (response.status_code, response.json()) == (201, {"a": 1})


async def test_a_head_answer_has_no_body_whatever_its_length_says() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with loopback(serving(raw)) as (server, base), client() as http:
        response = await http.head(f"{base}/x", timeout=2)
        assert (response.status_code, response.content) == (200, b"")
        assert (await http.head(f"{base}/x", timeout=2)).status_code == 200
    assert server.connections == 2


async def test_bytes_after_an_answer_close_the_connection() -> None:
    raw = answer("200 OK", b"{}") + b"HTTP/1.1 200 OK\r\n"
    async with loopback(serving(raw)) as (server, base), client() as http:
        for _ in range(2):
            assert (await http.get(f"{base}/x")).status_code == 200
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", b"{}"))
        await writer.drain()
        writer.close()

    async with loopback(one_answer) as (server, base), client() as http:
        assert (await http.get(f"{base}/x")).status_code == 200
        await asyncio.sleep(0.1)  # the server's close reaches the client
        assert (await http.get(f"{base}/x")).status_code == 200
    assert server.connections == 2


async def test_an_idle_connection_past_its_keepalive_expiry_is_not_reused() -> None:
    brief = httpx.Limits(max_connections=10, keepalive_expiry=0.05)
    async with (
        loopback(serving(answer("200 OK", b"{}"))) as (server, base),
        client(limits=brief) as http,
    ):
        assert (await http.get(f"{base}/x")).status_code == 200
        await asyncio.sleep(0.1)
        assert (await http.get(f"{base}/x")).status_code == 200
    assert server.connections == 2


async def test_connections_past_the_idle_limit_are_closed_not_kept() -> None:
    release = asyncio.Event()
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=1)
    async with loopback(gated(release)) as (server, base), client(limits=limits) as http:
        three = [asyncio.create_task(http.get(f"{base}/x")) for _ in range(3)]
        await asyncio.sleep(0.1)
        release.set()
        assert [r.status_code for r in await asyncio.gather(*three)] == [200, 200, 200]
        await asyncio.gather(*(http.get(f"{base}/x") for _ in range(3)))
    assert server.connections == 5  # three at once, then two of the three again: one was kept


async def test_idle_connections_another_server_closed_leave_the_idle_places_free() -> None:
    """Connections of one origin that its server closed while idle no longer count as idle: a
    second origin's connections are kept alive, not closed after each request."""

    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.05)  # both requests are in flight at once
        writer.write(answer("200 OK", b"{}"))
        await writer.drain()

    limits = httpx.Limits(max_connections=10, max_keepalive_connections=2)
    async with (
        loopback(one_answer) as (_, closing),
        loopback(serving(answer("200 OK", b"{}"))) as (other, base),
        client(limits=limits) as http,
    ):
        await asyncio.gather(http.get(f"{closing}/x"), http.get(f"{closing}/x"))
        await asyncio.sleep(0.1)  # the first server's close reaches the client
        for _ in range(3):
            assert (await http.get(f"{base}/x")).status_code == 200
    assert other.connections == 1


async def test_expired_idle_connections_give_their_places_to_another_origin() -> None:
    """Idle connections past their keep-alive expiry are closed when their places are needed,
    not kept open until their own origin is asked again."""
    closed = 0

    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal closed
        await read_request(reader)
        await asyncio.sleep(0.05)
        writer.write(answer("200 OK", b"{}"))
        await writer.drain()
        await reader.read()  # returns at the client's end of the connection
        closed += 1

    brief = httpx.Limits(max_connections=10, max_keepalive_connections=2, keepalive_expiry=0.05)
    async with (
        loopback(until_eof) as (_, rare),
        loopback(serving(answer("200 OK", b"{}"))) as (other, base),
        client(limits=brief) as http,
    ):
        await asyncio.gather(http.get(f"{rare}/x"), http.get(f"{rare}/x"))
        await asyncio.sleep(0.1)  # both idle past their expiry
        for _ in range(3):
            assert (await http.get(f"{base}/x")).status_code == 200
        await asyncio.sleep(0.05)
        assert closed == 2
    assert other.connections == 1


async def test_an_idle_connection_holds_nothing_of_its_last_request() -> None:
    """Up to `max_keepalive_connections` connections wait idle: none keeps its last request (its
    body, its API key) or the answer's body once the caller let them go."""
    body = b"x" * 200_000
    async with (
        loopback(serving(answer("200 OK", body))) as (_, base),
        AsyncioTransport(LIMITS) as transport,
    ):
        request = httpx.Request("POST", f"{base}/api/calls", content=b"prompt" * 1000)
        response = await transport.handle_async_request(request)
        assert await response.aread() == body
        sent = weakref.ref(request)
        del request, response
        gc.collect()
        assert sent() is None
        (idle,) = [c for connections in transport._idle.values() for c in connections]
        assert idle._body is None


async def test_a_cancelled_request_closes_its_connection_and_frees_its_place() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    one = httpx.Limits(max_connections=1)
    async with loopback(silent) as (server, base), client(limits=one) as http:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await http.get(f"{base}/x", timeout=5)
    assert server.connections == 3  # each cancelled one closed; the one place came back


def filler_lines(head: bytes, lines: int) -> Handler:
    """Answers with `head`, then up to `lines` header lines of 1 KB, then the blank line."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            for n in range(lines):
                writer.write(b"X-Filler-%d: %s\r\n" % (n, b"x" * 1000))
                await writer.drain()
            writer.write(b"\r\n")
            await writer.drain()

    return handler


async def test_endless_headers_are_read_no_further_than_the_head_cap() -> None:
    endless = filler_lines(b"HTTP/1.1 200 OK\r\n", 100_000)
    async with loopback(endless) as (_, base), client() as http:
        with pytest.raises(ResponseTooLarge, match="headers are over 65536 bytes"):
            await http.get(f"{base}/x", timeout=5)


async def test_trailers_are_not_taken_for_headers() -> None:
    """httpx's own transport drops a chunked answer's trailers: a Set-Cookie among them must not
    reach the client's cookies, nor a trailer its headers."""
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Head: 1\r\n\r\n"
        b"2\r\n{}\r\n0\r\nSet-Cookie: session=planted\r\nX-Trailer: 1\r\n\r\n"
    )
    async with loopback(serving(raw)) as (server, base), client() as http:
        response = await http.get(f"{base}/x")
        assert (await http.get(f"{base}/x")).status_code == 200

    assert response.content == b"{}"
    assert response.headers.raw == [(b"Transfer-Encoding", b"chunked"), (b"X-Head", b"1")]
    assert not http.cookies
    assert server.connections == 1  # the trailers ended the answer; the connection was kept


async def test_endless_trailers_are_read_no_further_than_the_head_cap() -> None:
    """Trailers, like headers, are not body: they are not let grow past the head cap."""
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    async with loopback(filler_lines(chunked, 200)) as (_, base), client() as http:
        with pytest.raises(ResponseTooLarge, match="over 65536 bytes"):
            await http.get(f"{base}/x", timeout=5)


async def test_an_answer_in_small_chunks_is_read_whole() -> None:
    """The chunks' framing counts as the headers do, but grows with the body: a body sent a
    few bytes at a time is no attack."""
    body = b"0123456789" * 20_000
    chunks = b"".join(b"5\r\n%s\r\n" % body[i : i + 5] for i in range(0, len(body), 5))
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.get(f"{base}/x", timeout=5)
    assert response.content == body


async def test_a_place_freed_while_requests_wait_goes_to_the_next_waiter() -> None:
    release = asyncio.Event()
    one = httpx.Limits(max_connections=1)
    async with loopback(gated(release)) as (server, base), client(limits=one) as http:
        first = asyncio.create_task(http.get(f"{base}/1", timeout=5))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(http.get(f"{base}/{n}", timeout=5)) for n in (2, 3)]
        await asyncio.sleep(0.05)
        release.set()
        responses = await asyncio.gather(first, *waiting)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert server.connections == 1  # the one connection served all three in turn


async def test_a_connection_whose_transport_is_closing_is_not_reused() -> None:
    """The server's end seen by the loop, the close callback not yet run: not taken."""
    loop = asyncio.get_running_loop()
    connection = _Connection((b"http", b"127.0.0.1", 80), lambda connection: None)
    closing = loop.create_future()  # any object with is_closing() serves as the transport

    class Closing:
        def is_closing(self) -> bool:
            return closing.done()

    connection.connection_made(Closing())  # type: ignore[arg-type]
    connection.idle_since = loop.time()
    assert connection.usable(loop.time(), 5.0)
    closing.set_result(None)
    assert not connection.usable(loop.time(), 5.0)


async def test_an_unknown_scheme_is_unsupported() -> None:
    async with client() as http:
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.get("ftp://127.0.0.1/x")


async def test_a_compressed_body_is_decoded_once() -> None:
    body = gzip.compress(b'{"joinUrl": "wss://x"}')
    raw = answer("201 Created", body, "Content-Encoding: gzip", "Content-Type: application/json")
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.post(f"{base}/api/calls", json={})

    assert response.json() == {"joinUrl": "wss://x"}
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(response.content))


async def test_a_body_encoded_twice_in_two_header_lines_is_a_decoding_error() -> None:
    body = gzip.compress(gzip.compress(b'{"joinUrl": "wss://x"}'))
    raw = answer("201 Created", body, "Content-Encoding: gzip", "Content-Encoding: gzip")
    async with loopback(serving(raw)) as (_, base), client() as http:
        with pytest.raises(httpx.DecodingError, match="'gzip, gzip'"):
            await http.post(f"{base}/api/calls", json={})


async def test_a_chunked_body_is_read_whole() -> None:
    raw = (
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
    )
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.post(f"{base}/api/calls", json={})

    assert response.json() == {"a": 1}


async def test_a_redirect_is_returned_not_followed() -> None:
    raw = answer("307 Temporary Redirect", b"", "Location: /elsewhere")
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.post(f"{base}/api/calls", json={})

    assert response.status_code == 307
    assert response.headers["location"] == "/elsewhere"
    assert len(SEEN) == 1


async def test_requests_reuse_one_keep_alive_connection() -> None:
    async with loopback(serving(answer("200 OK", b"{}"))) as (server, base), client() as http:
        for _ in range(3):
            assert (await http.get(f"{base}/api/calls")).status_code == 200

    assert len(SEEN) == 3
    assert server.connections == 1


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with loopback(serving(b"")) as (_, base):
        pass  # the port is closed again
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"{base}/api/calls", json={})


async def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with loopback(silent) as (_, base), client() as http:
        began = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{base}/api/calls", json={}, timeout=0.2)
        assert time.monotonic() - began < 2


async def test_waiting_too_long_for_a_free_connection_is_a_pool_timeout() -> None:
    """Nothing was sent: the Ultravox client may retry it."""
    release = asyncio.Event()
    one = httpx.Limits(max_connections=1)
    async with loopback(gated(release)) as (server, base), client(limits=one) as http:
        first = asyncio.create_task(http.get(f"{base}/first", timeout=5))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(f"{base}/second", timeout=0.2)
        release.set()
        assert (await first).status_code == 200
    assert server.connections == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"joinUrl"',
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    ],
    ids=["closed without an answer", "body cut short", "not http"],
)
async def test_a_broken_answer_is_a_protocol_error(reply: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()  # then the connection is closed

    async with loopback(broken) as (_, base), client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(f"{base}/api/calls", json={})


async def test_closing_the_client_closes_its_connections() -> None:
    closed = asyncio.Event()

    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("200 OK", b"{}"))
        await writer.drain()
        await reader.read()  # returns at the client's end of the connection
        closed.set()

    async with loopback(until_eof) as (_, base):
        async with client() as http:
            await http.get(f"{base}/api/calls")
        await asyncio.wait_for(closed.wait(), timeout=2)


async def test_the_ultravox_client_retries_a_refused_connection_but_not_a_cut_one() -> None:
    """The retry rules of `UltravoxClient` hold over this transport: never reached -> retried
    until the deadline; broken after sending -> one attempt, the call may exist."""
    async with loopback(serving(b"")) as (_, base):
        pass
    async with AsyncioTransport(LIMITS) as transport:
        ultravox = UltravoxClient(
            transport, api_url=f"{base}/api", api_key="k", deadline_seconds=0.3, backoff_base=0.01
        )
        with pytest.raises(UltravoxConnectionError):
            await ultravox.create_call({})

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with loopback(hang_up) as (server, base), AsyncioTransport(LIMITS) as transport:
        ultravox = UltravoxClient(transport, api_url=f"{base}/api", api_key="k", deadline_seconds=2)
        with pytest.raises(UltravoxTransportError):
            await ultravox.create_call({})
    assert server.connections == 1


async def test_the_ultravox_client_creates_a_call_through_it() -> None:
    raw = answer("201 Created", b'{"callId": "c1", "joinUrl": "wss://j"}')
    async with loopback(serving(raw)) as (_, base), AsyncioTransport(LIMITS) as transport:
        ultravox = UltravoxClient(
            transport, api_url=f"{base}/api", api_key="k-1", deadline_seconds=2
        )
        call = await ultravox.create_call({"systemPrompt": "hi"})

    assert (call.call_id, call.join_url) == ("c1", "wss://j")
    (received,) = SEEN
    assert received.line == "POST /api/calls HTTP/1.1"
    assert ("X-API-Key", "k-1") in received.headers
    assert json.loads(received.body) == {"systemPrompt": "hi"}


def test_the_service_sends_ultravox_requests_through_it() -> None:
    # Tests elsewhere run on httpx's own transport, which respx mocks (see conftest.py); the
    # tests below send through this very transport, capped as the service uses it.
    assert isinstance(ultravox_transport(), AsyncioTransport)


# The answer-size cap (app/http_transport.py) on the service's own path to Ultravox.

CHUNK = 64 * 1024
HUGE = 300 * 1024 * 1024


@asynccontextmanager
async def service_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=ultravox_transport()) as http:
        yield http


class Flood:
    """Answers every request with `head`, then up to 300 MiB of spaces, until the client stops
    reading; `sent` counts what was written, `done` is set when writing stopped."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.sent = 0
        self.done = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(self.head)
        try:
            while self.sent < HUGE:
                writer.write(b" " * CHUNK)
                await writer.drain()
                self.sent += CHUNK
        finally:
            self.done.set()


async def test_an_answer_declaring_a_length_past_the_cap_is_refused_at_once() -> None:
    flood = Flood(f"HTTP/1.1 201 Created\r\nContent-Length: {HUGE}\r\n\r\n".encode())
    async with loopback(flood) as (server, base), service_client() as http:
        with pytest.raises(ResponseTooLarge, match="is over 1048576 bytes"):
            await http.post(f"{base}/api/calls", json={})
        await asyncio.wait_for(flood.done.wait(), timeout=5)  # the connection was closed
    # What the sockets' buffers took before the client hung up; nothing of it was read.
    assert flood.sent < 16 * 1024 * 1024
    assert server.connections == 1


async def test_an_endless_answer_is_read_no_further_than_the_cap() -> None:
    flood = Flood(b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n")
    async with loopback(flood) as (_, base), service_client() as http:
        with pytest.raises(ResponseTooLarge):
            await http.post(f"{base}/api/calls", json={})
        await asyncio.wait_for(flood.done.wait(), timeout=5)
    assert MAX_RESPONSE_BYTES < flood.sent < 16 * 1024 * 1024


def bomb(size: int = 64 * 1024 * 1024) -> bytes:
    """A gzip body of about 64 KiB that decodes to `size` bytes."""
    return gzip.compress(b"\0" * size, compresslevel=9)


async def test_a_compressed_answer_decoding_past_the_cap_is_refused_in_bounded_memory() -> None:
    raw = answer("201 Created", bomb(), "Content-Encoding: gzip")
    assert len(raw) < MAX_RESPONSE_BYTES
    async with loopback(serving(raw)) as (_, base), service_client() as http:
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge):
                await http.post(f"{base}/api/calls", json={})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The cap and one decoding step, not the 64 MiB the body inflates to.
    assert peak < 3 * MAX_RESPONSE_BYTES


async def test_an_answer_in_tiny_chunks_is_held_in_memory_about_its_size() -> None:
    """A body under the cap sent five bytes a chunk: what is held is the body, not an object per
    chunk (about 26 MiB for this one, a connection)."""
    body = b"0123456789" * (MAX_RESPONSE_BYTES // 10)
    chunks = b"".join(b"5\r\n%s\r\n" % body[i : i + 5] for i in range(0, len(body), 5))
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    async with loopback(serving(raw)) as (_, base), service_client() as http:
        tracemalloc.start()
        try:
            response = await http.get(f"{base}/api/calls")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.content == body
    assert peak < 4 * MAX_RESPONSE_BYTES


async def test_a_compressed_answer_under_the_cap_is_decoded_once() -> None:
    body = json.dumps({"joinUrl": "wss://x", "pad": "y" * (MAX_RESPONSE_BYTES - 100)}).encode()
    raw = answer("201 Created", gzip.compress(body), "Content-Encoding: gzip")
    async with loopback(serving(raw)) as (_, base), service_client() as http:
        response = await http.post(f"{base}/api/calls", json={})

    assert response.content == body
    assert "content-encoding" not in response.headers


async def test_requests_ask_only_for_encodings_decoded_within_the_cap() -> None:
    async with loopback(serving(answer("200 OK", b"{}"))) as (_, base), service_client() as http:
        await http.get(f"{base}/api/calls", headers={"Accept-Encoding": "br, zstd, gzip"})

    (received,) = SEEN
    assert ("Accept-Encoding", "gzip, deflate") in received.headers


async def test_an_answer_in_an_encoding_not_asked_for_is_a_decoding_error() -> None:
    raw = answer("201 Created", b"\x1b\x00\x00", "Content-Encoding: br")
    async with loopback(serving(raw)) as (_, base), service_client() as http:
        with pytest.raises(httpx.DecodingError, match="encoded as 'br'"):
            await http.post(f"{base}/api/calls", json={})


async def test_the_ultravox_client_takes_a_compressed_flood_as_a_failed_request() -> None:
    """Sent, so never retried (the call may exist): the bridge answers with the fallback."""
    raw = answer("201 Created", bomb(), "Content-Encoding: gzip")
    async with loopback(serving(raw)) as (server, base), ultravox_transport() as transport:
        ultravox = UltravoxClient(transport, api_url=f"{base}/api", api_key="k", deadline_seconds=2)
        with pytest.raises(UltravoxTransportError, match="is over 1048576 bytes"):
            await ultravox.create_call({})
    assert len(SEEN) == 1
    assert server.connections == 1


async def test_a_transfer_coding_besides_chunked_is_a_decoding_error() -> None:
    body = gzip.compress(b'{"a": 1}')
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    async with loopback(serving(raw)) as (_, base), client() as http:
        with pytest.raises(httpx.DecodingError, match="'gzip, chunked' is not chunked"):
            await http.get(f"{base}/x", timeout=5)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_an_answer_without_a_body_is_not_decoded_or_measured(method: str) -> None:
    # 204 and HEAD answers carry no body, whatever encoding or length their headers name.
    status = "204 No Content" if method == "GET" else "200 OK"
    raw = (
        f"HTTP/1.1 {status}\r\nContent-Encoding: br\r\nContent-Length: {HUGE}\r\n\r\n".encode()
        if method == "HEAD"
        else f"HTTP/1.1 {status}\r\nContent-Encoding: br\r\n\r\n".encode()
    )
    async with loopback(serving(raw)) as (_, base), client() as http:
        response = await http.request(method, f"{base}/x", timeout=5)
    assert (response.content, response.headers["content-encoding"]) == (b"", "br")


async def test_a_closed_transport_fails_its_waiting_and_later_requests() -> None:
    release = asyncio.Event()
    transport = AsyncioTransport(httpx.Limits(max_connections=1))
    async with loopback(gated(release)) as (_, base):
        http = httpx.AsyncClient(transport=transport)
        first = asyncio.create_task(http.get(f"{base}/1", timeout=5))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(http.get(f"{base}/2", timeout=5))
        await asyncio.sleep(0.05)
        await transport.aclose()
        with pytest.raises(RuntimeError, match="the transport is closed"):
            await waiting
        with pytest.raises(httpx.RemoteProtocolError):
            await first  # its connection closed under it
        with pytest.raises(RuntimeError, match="the transport is closed"):
            await transport.handle_async_request(httpx.Request("GET", f"{base}/3"))
        release.set()
        await http.aclose()  # a second close is harmless
