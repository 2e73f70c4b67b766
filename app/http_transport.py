"""A cap on how much of an answer from Ultravox or a provider's API is read, for any httpx
transport (httpx's own, or the aiohttp one in app/aiohttp_transport.py).

The cap counts what the service would hold in memory: the bytes received and, for a compressed
answer, the bytes it decodes to. httpx decodes above its transport without a bound (a 1 MiB gzip
answer can inflate to 1 GiB), so this transport decodes gzip and deflate itself, a bounded piece
at a time, and hands httpx the decoded body without its `Content-Encoding`.
"""

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

# The most this service reads of an answer from Ultravox or a provider's API. Their answers are
# a few KiB of JSON (a created call echoes its system prompt); anything near this is broken.
MAX_RESPONSE_BYTES = 1024 * 1024

# The encodings decoded here within the cap; requests ask for no others.
ACCEPTED_ENCODINGS = ("gzip", "deflate")

# The most output one decompression step makes, whatever the input's ratio (up to ~1000:1).
_DECODE_STEP = 64 * 1024


class ResponseTooLarge(httpx.ReadError):
    """An upstream's answer is longer than `MAX_RESPONSE_BYTES`: it was not read to the end.

    A read error, because the request was sent: the upstream may have acted on it."""


class CappedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that no answer is read or decoded past `max_bytes`: one declaring a
    longer `Content-Length` is refused at once, and a longer body, or a compressed one decoding
    to more, stops at the cap. Either way the request raises `ResponseTooLarge` and the
    connection is closed, not read to the end. An answer in an encoding it did not ask for is an
    `httpx.DecodingError`."""

    def __init__(self, transport: httpx.AsyncBaseTransport, max_bytes: int = MAX_RESPONSE_BYTES):
        self._transport = transport
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if _asks_for_others(request.headers.get("accept-encoding")):
            request.headers["Accept-Encoding"] = ", ".join(ACCEPTED_ENCODINGS)
        response = await self._transport.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            await response.aclose()
            raise ResponseTooLarge(self._too_large(request), request=request)
        headers = response.headers
        encoding = headers.get("content-encoding", "identity").strip().lower()
        decoder: _Decoder | None = None
        if encoding != "identity":
            if encoding not in ACCEPTED_ENCODINGS:
                await response.aclose()
                raise httpx.DecodingError(
                    f"the answer of {request.url.host} is encoded as {encoding!r}, not one of "
                    f"{', '.join(ACCEPTED_ENCODINGS)}",
                    request=request,
                )
            decoder = _Decoder(encoding)
            headers = headers.copy()
            del headers["content-encoding"]  # decoded here: httpx must not decode it again
            headers.pop("content-length", None)  # the encoded length
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_CappedStream(response.stream, self._max_bytes, request, decoder),
            extensions=response.extensions,
        )

    def _too_large(self, request: httpx.Request) -> str:
        return _too_large(request, self._max_bytes)

    async def aclose(self) -> None:
        await self._transport.aclose()


def _too_large(request: httpx.Request, max_bytes: int) -> str:
    return f"the answer of {request.url.host} is over {max_bytes} bytes"


def _asks_for_others(accept_encoding: str | None) -> bool:
    if accept_encoding is None:
        return False
    asked = {part.partition(";")[0].strip().lower() for part in accept_encoding.split(",")}
    return not asked <= {*ACCEPTED_ENCODINGS, "identity", ""}


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


class _CappedStream(httpx.AsyncByteStream):
    def __init__(
        self,
        stream: httpx.AsyncByteStream | httpx.SyncByteStream,
        max_bytes: int,
        request: httpx.Request,
        decoder: _Decoder | None,
    ) -> None:
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("an async transport answered with a sync stream")
        self._stream = stream
        self._max_bytes = max_bytes
        self._request = request
        self._decoder = decoder

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = decoded = 0
        async for chunk in self._stream:
            received += len(chunk)
            self._check(received)
            if self._decoder is None:
                yield chunk
                continue
            for piece in self._decoder.decode(chunk, self._request):
                decoded += len(piece)
                self._check(decoded)
                yield piece

    def _check(self, size: int) -> None:
        if size > self._max_bytes:
            message = _too_large(self._request, self._max_bytes)
            raise ResponseTooLarge(message, request=self._request)

    async def aclose(self) -> None:
        await self._stream.aclose()
