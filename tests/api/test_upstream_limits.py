"""Oversized answers from Ultravox and the providers' APIs: read no further than the cap, and
treated as a failed request (fallback for callers, an uncertain dial for API clients)."""

import io
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import responses
import respx

from app.http_transport import MAX_RESPONSE_BYTES
from tests.conftest import (
    API_URL,
    created_call,
    make_settings,
    running_app,
    twilio_fields,
    twilio_webhook,
)
from tests.outbound_mocks import (
    AUTH,
    CALLEE,
    PLIVO_CALLS_URL,
    TELNYX_CALLS_URL,
    TWILIO_CALLS_URL,
    UV_CALL_ID,
    outbound_settings,
    ultravox_created,
    ultravox_deleted,
)

CHUNK = 64 * 1024
HUGE = 300 * 1024 * 1024
# What a reader may take beyond the cap: the chunk that crossed it.
READ_LIMIT = MAX_RESPONSE_BYTES + CHUNK


class EndlessBody(httpx.AsyncByteStream):
    """A 300 MiB body, made only as fast as it is read; `sent` counts what was read."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < HUGE:
            self.sent += CHUNK
            yield b" " * CHUNK


class EndlessRaw(io.RawIOBase):
    """The same for `requests`: a raw socket-like file of 300 MiB, counting what was read."""

    def __init__(self) -> None:
        self.sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        size = min(len(buffer), HUGE - self.sent)
        buffer[:size] = b" " * size
        self.sent += size
        return size


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def requests_apis() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


async def test_ultravox_answer_past_the_cap_gives_the_caller_the_fallback(
    apis: respx.MockRouter,
) -> None:
    body = EndlessBody()
    apis.post(f"{API_URL}/calls").mock(return_value=httpx.Response(201, stream=body))
    async with running_app(make_settings()) as client:
        response = await twilio_webhook(twilio_fields()).send(client)
    assert response.status_code == 200
    assert "<Say>Sorry, our assistant cannot take your call right now." in response.text
    assert "<Stream" not in response.text
    assert MAX_RESPONSE_BYTES < body.sent <= READ_LIMIT


async def test_ultravox_answer_declaring_a_length_past_the_cap_is_not_read_at_all(
    apis: respx.MockRouter,
) -> None:
    body = EndlessBody()
    headers = {"content-length": str(HUGE), "content-type": "application/json"}
    apis.post(f"{API_URL}/calls").mock(
        return_value=httpx.Response(201, headers=headers, stream=body)
    )
    async with running_app(make_settings()) as client:
        response = await twilio_webhook(twilio_fields()).send(client)
    assert "<Say>" in response.text
    assert body.sent == 0


async def test_ultravox_answer_just_under_the_cap_is_read(apis: respx.MockRouter) -> None:
    created = created_call()
    padded = created.content[:-1] + b"," + b'"pad":"' + b"x" * (MAX_RESPONSE_BYTES - 200) + b'"}'
    apis.post(f"{API_URL}/calls").mock(return_value=httpx.Response(201, content=padded))
    async with running_app(make_settings()) as client:
        response = await twilio_webhook(twilio_fields()).send(client)
    assert "<Stream" in response.text


async def test_telnyx_dial_answer_past_the_cap_is_an_uncertain_dial(apis: respx.MockRouter) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    body = EndlessBody()
    apis.post(TELNYX_CALLS_URL).mock(return_value=httpx.Response(200, stream=body))
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 504
    assert response.json()["ultravoxCallId"] == UV_CALL_ID
    assert deleted.call_count == 0  # Telnyx may be dialing: the call is kept for it
    assert MAX_RESPONSE_BYTES < body.sent <= READ_LIMIT


@pytest.mark.parametrize(
    ("provider", "url"), [("twilio", TWILIO_CALLS_URL), ("plivo", PLIVO_CALLS_URL)]
)
async def test_requests_sdk_dial_answer_past_the_cap_is_an_uncertain_dial(
    provider: str, url: str, apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    raw = EndlessRaw()
    requests_apis.add(responses.POST, url, body=io.BufferedReader(raw, CHUNK), status=201)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": provider, "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 504
    assert f"the answer of {url} is over {MAX_RESPONSE_BYTES} bytes" in response.json()["detail"]
    assert deleted.call_count == 0
    assert MAX_RESPONSE_BYTES < raw.sent <= READ_LIMIT
