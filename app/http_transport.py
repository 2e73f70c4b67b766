"""A cap on how much of an answer from Ultravox or a provider's API is read, for any httpx
transport (httpx's own, wrapped in `CappedTransport`, or the asyncio one in
app/asyncio_transport.py, which reads within the cap itself).

The cap counts what the service would hold in memory: the bytes received and, for a compressed
answer, the bytes it decodes to. httpx decodes above its transport without a bound (a 1 MiB gzip
answer can inflate to 1 GiB), so the body is decoded here, gzip and deflate a bounded piece at a
time, and httpx gets the decoded body, read to the end, without its `Content-Encoding`.
"""

import functools
import zlib
from collections.abc import Iterator, Sequence

import httpx

# The most this service reads of an answer from Ultravox or a provider's API. Their answers are
# a few KiB of JSON (a created call echoes its system prompt); anything near this is broken.
MAX_RESPONSE_BYTES = 1024 * 1024

# The encodings decoded here within the cap; requests ask for no others.
ACCEPTED_ENCODINGS = ("gzip", "deflate")
ACCEPT_ENCODING = ", ".join(ACCEPTED_ENCODINGS)

# The most output one decompression step makes, whatever the input's ratio (up to ~1000:1).
_DECODE_STEP = 64 * 1024

# What no longer describes an answer this module decoded.
_ENCODED_HEADERS = (b"content-encoding", b"content-length")

RawHeaders = Sequence[tuple[bytes, bytes]]


class ResponseTooLarge(httpx.ReadError):
    """An upstream's answer is longer than `MAX_RESPONSE_BYTES`: it was not read to the end.

    A read error, because the request was sent: the upstream may have acted on it."""


class CappedBody:
    """One answer's body as it is read: decoded, and refused with `ResponseTooLarge` as soon as
    the bytes received, or those they decode to, pass `max_bytes`. A `Content-Length` past the
    cap is refused before anything is read, an encoding the request did not ask for with
    `httpx.DecodingError`: the reader then closes the connection instead of reading on."""

    def __init__(
        self,
        request: httpx.Request,
        max_bytes: int,
        content_length: str | None,
        content_encoding: str,
    ) -> None:
        """`content_encoding`: the answer's codings, comma-separated; "" when it has none."""
        self._request = request
        self._max_bytes = max_bytes
        declared = content_length or ""
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(_too_large(request, max_bytes), request=request)
        encoding = content_encoding.strip().lower()
        self._decoder = _Decoder(encoding) if encoding in ACCEPTED_ENCODINGS else None
        if self._decoder is None and encoding not in ("", "identity"):
            raise httpx.DecodingError(
                f"the answer of {request.url.host} is encoded as {encoding!r}, not one of "
                f"{ACCEPT_ENCODING}",
                request=request,
            )
        # One buffer, not a list of the pieces: an answer in chunks of a few bytes would hold an
        # object per chunk, about 30 times the bytes the cap counts.
        self._content = bytearray()
        self.received = 0  # the bytes added, before decoding
        self._decoded = 0

    def add(self, chunk: bytes) -> None:
        """The next bytes received."""
        self.received += len(chunk)
        self._check(self.received)
        if self._decoder is None:
            self._content += chunk
            return
        for piece in self._decoder.decode(chunk, self._request):
            self._decoded += len(piece)
            self._check(self._decoded)
            self._content += piece

    def content(self) -> bytes:
        """The body, decoded, once all of it was added."""
        return bytes(self._content)

    def headers(self, raw: RawHeaders) -> RawHeaders:
        """The answer's headers as they describe `content()`: without the encoding decoded here
        and its length (httpx sets the decoded one)."""
        if self._decoder is None:
            return raw
        return [(name, value) for name, value in raw if name.lower() not in _ENCODED_HEADERS]

    def _check(self, size: int) -> None:
        if size > self._max_bytes:
            message = _too_large(self._request, self._max_bytes)
            raise ResponseTooLarge(message, request=self._request)


class CappedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that no answer is read or decoded past `max_bytes` (`CappedBody`):
    the answer comes back read to the end, or the request raises `ResponseTooLarge` or
    `httpx.DecodingError` and the connection is closed, not read to the end."""

    def __init__(self, transport: httpx.AsyncBaseTransport, max_bytes: int = MAX_RESPONSE_BYTES):
        self._transport = transport
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if asks_for_other_encodings(request.headers.get("accept-encoding")):
            request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        response = await self._transport.handle_async_request(request)
        if not isinstance(response.stream, httpx.AsyncByteStream):
            raise TypeError("an async transport answered with a sync stream")
        try:
            headers = response.headers
            body = CappedBody(
                request,
                self._max_bytes,
                headers.get("content-length"),
                headers.get("content-encoding", ""),
            )
            async for chunk in response.stream:
                body.add(chunk)
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=body.headers(headers.raw),
            content=body.content(),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()


@functools.lru_cache(maxsize=64)
def asks_for_other_encodings(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` offers an encoding not decoded here within the cap (a request
    sent with it gets `ACCEPT_ENCODING` instead)."""
    if accept_encoding is None:
        return False
    asked = {part.partition(";")[0].strip().lower() for part in accept_encoding.split(",")}
    return not asked <= {*ACCEPTED_ENCODINGS, "identity", ""}


def _too_large(request: httpx.Request, max_bytes: int) -> str:
    return f"the answer of {request.url.host} is over {max_bytes} bytes"


class _Decoder:
    """gzip or deflate, inflated at most `_DECODE_STEP` bytes at a time. deflate is meant to be
    zlib-wrapped, but some servers send it raw; like httpx, either is accepted."""

    def __init__(self, encoding: str) -> None:
        wbits = zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(wbits)
        self._may_be_raw = encoding == "deflate"  # until its first bytes inflate

    def decode(self, data: bytes, request: httpx.Request) -> Iterator[bytes]:
        try:
            yield from self._steps(data)
        except zlib.error as exc:
            if not self._may_be_raw:
                raise httpx.DecodingError(str(exc), request=request) from exc
            self._may_be_raw = False
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            yield from self.decode(data, request)

    def _steps(self, data: bytes) -> Iterator[bytes]:
        while True:
            piece = self._inflate.decompress(data, _DECODE_STEP)
            self._may_be_raw = False
            if piece:
                yield piece
            data = self._inflate.unconsumed_tail
            # A full piece may leave output inside zlib even when all input was taken.
            if not data and len(piece) < _DECODE_STEP:
                return
