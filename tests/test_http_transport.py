"""The answer-size cap's decoding: what httpx would decode above its transport, decoded here
within the cap (the cap itself on the wire: tests/transport/test_asyncio_transport.py and
tests/api/test_upstream_limits.py)."""

import gzip
import zlib

import httpx
import pytest

from app.http_transport import CappedTransport, ResponseTooLarge

BODY = b'{"callId": "c1", "joinUrl": "wss://j"}' * 100


async def fetch(encoding: str, body: bytes, max_bytes: int = 1024 * 1024) -> httpx.Response:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": encoding}, content=body)

    transport = CappedTransport(httpx.MockTransport(upstream), max_bytes)
    async with httpx.AsyncClient(transport=transport) as http:
        return await http.get("https://ultravox.test/api/calls")


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(BODY)),
        ("GZip ", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("deflate", zlib.compress(BODY)[2:-4]),  # raw deflate, as some servers send it
        ("identity", BODY),
    ],
)
async def test_each_accepted_encoding_is_decoded_once(encoding: str, encoded: bytes) -> None:
    response = await fetch(encoding, encoded)
    assert response.content == BODY
    assert response.headers.get("content-encoding", "identity") == "identity"  # not decoded twice


async def test_the_cap_counts_decoded_bytes() -> None:
    encoded = gzip.compress(BODY)
    assert (await fetch("gzip", encoded, max_bytes=len(BODY))).content == BODY
    with pytest.raises(ResponseTooLarge, match=f"is over {len(BODY) - 1} bytes"):
        await fetch("gzip", encoded, max_bytes=len(BODY) - 1)


async def test_a_corrupt_compressed_answer_is_a_decoding_error() -> None:
    with pytest.raises(httpx.DecodingError):
        await fetch("gzip", b"\x1f\x8b not gzip at all")
    with pytest.raises(httpx.DecodingError):
        await fetch("deflate", b"\xff\xfe neither zlib nor raw deflate")
