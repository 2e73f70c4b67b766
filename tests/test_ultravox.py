"""The Ultravox client alone: which failures it retries, how long it waits, and when it stops."""

import asyncio
import email.utils
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from app.ultravox import (
    UltravoxAuthError,
    UltravoxBadResponse,
    UltravoxClient,
    UltravoxConnectionError,
    UltravoxRateLimited,
    UltravoxRequestError,
    UltravoxTimeout,
    UltravoxUnavailable,
    parse_retry_after,
)

API_URL = "https://ultravox.test/api"
CREATED = {"callId": "c-1", "joinUrl": "wss://voice.ultravox.test/j"}


class Sleeps:
    """A stand-in for asyncio.sleep that records the waits instead of waiting. It still yields
    to the event loop, so that a retry loop that never stops is cut off by the client's deadline
    (and fails the test) instead of spinning forever."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def api() -> respx.MockRouter:
    with respx.mock(base_url=API_URL) as router:
        yield router


async def make_client(sleeps: Sleeps, deadline: float = 8.0) -> UltravoxClient:
    return UltravoxClient(
        httpx.AsyncHTTPTransport(),
        api_url=API_URL,
        api_key="k",
        deadline_seconds=deadline,
        sleep=sleeps,
    )


async def test_retry_after_seconds_is_waited_exactly(api: respx.MockRouter) -> None:
    api.post("/calls").side_effect = [
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(201, json=CREATED),
    ]
    sleeps = Sleeps()
    call = await (await make_client(sleeps)).create_call({"systemPrompt": "hi"})
    assert call.join_url == "wss://voice.ultravox.test/j"
    assert call.call_id == "c-1"
    assert sleeps.waits == [3.0]


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 4, usegmt=True)
    assert parse_retry_after(header, now=now) == 4.0
    assert parse_retry_after("garbage", now=now) is None
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0


async def test_unavailable_is_retried_with_growing_backoff(api: respx.MockRouter) -> None:
    api.post("/calls").side_effect = [
        httpx.Response(503),
        httpx.Response(502),
        httpx.Response(504),
        httpx.Response(201, json=CREATED),
    ]
    sleeps = Sleeps()
    await (await make_client(sleeps)).create_call({})
    # Backoff 0.2, 0.4, 0.8 s, each jittered to between half and all of it.
    assert len(sleeps.waits) == 3
    for wait, ceiling in zip(sleeps.waits, [0.2, 0.4, 0.8], strict=True):
        assert ceiling / 2 <= wait <= ceiling


async def test_backoff_grows_no_longer_than_its_ceiling(api: respx.MockRouter) -> None:
    api.post("/calls").side_effect = [httpx.Response(503)] * 6 + [httpx.Response(201, json=CREATED)]
    sleeps = Sleeps()
    await (await make_client(sleeps)).create_call({})
    # 0.2, 0.4, 0.8, 1.6, then the 2 s ceiling instead of 3.2 and 6.4; each jittered.
    assert len(sleeps.waits) == 6
    for wait, ceiling in zip(sleeps.waits, [0.2, 0.4, 0.8, 1.6, 2.0, 2.0], strict=True):
        assert ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy")],
    ids=["connect-error", "connect-timeout", "pool-timeout"],
)
async def test_errors_before_the_request_was_sent_are_retried(
    api: respx.MockRouter, error: httpx.TransportError
) -> None:
    # The request never reached Ultravox, so trying again cannot create a second call.
    route = api.post("/calls")
    route.side_effect = [error, httpx.Response(201, json=CREATED)]
    sleeps = Sleeps()
    call = await (await make_client(sleeps)).create_call({})
    assert call.call_id == "c-1"
    assert route.call_count == 2
    assert len(sleeps.waits) == 1


async def test_read_timeout_is_not_retried_because_the_call_may_exist(
    api: respx.MockRouter,
) -> None:
    route = api.post("/calls")
    route.side_effect = httpx.ReadTimeout("slow")
    with pytest.raises(UltravoxTimeout):
        await (await make_client(Sleeps())).create_call({})
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, UltravoxRequestError),
        (401, UltravoxAuthError),
        (403, UltravoxAuthError),
        (404, UltravoxRequestError),
        (500, UltravoxRequestError),
    ],
)
async def test_errors_that_a_retry_cannot_fix_are_raised_at_once(
    api: respx.MockRouter, status: int, error: type[Exception]
) -> None:
    route = api.post("/calls").respond(status, json={"detail": "no"})
    with pytest.raises(error) as raised:
        await (await make_client(Sleeps())).create_call({})
    assert route.call_count == 1
    assert raised.value.status_code == status  # type: ignore[attr-defined]


async def test_retries_stop_when_the_next_wait_would_pass_the_deadline(
    api: respx.MockRouter,
) -> None:
    route = api.post("/calls").respond(503, headers={"Retry-After": "2"})
    sleeps = Sleeps()
    with pytest.raises(UltravoxUnavailable):
        await (await make_client(sleeps, deadline=1.5)).create_call({})
    assert route.call_count == 1
    assert sleeps.waits == []


async def test_rate_limit_keeps_retrying_within_the_deadline(api: respx.MockRouter) -> None:
    # The recorded sleeps do not pass time, so the deadline never runs out: each 429 is retried
    # until the responses run out; the error of the last attempt is what the caller sees.
    api.post("/calls").side_effect = [httpx.Response(429, headers={"Retry-After": "1"})] * 3 + [
        httpx.Response(429, headers={"Retry-After": "100"})
    ]
    sleeps = Sleeps()
    with pytest.raises(UltravoxRateLimited):
        await (await make_client(sleeps)).create_call({})
    assert sleeps.waits == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "body",
    [{"callId": "c"}, {"callId": "c", "joinUrl": "https://not-a-socket"}, ["a"]],
    ids=["missing", "not-websocket", "not-object"],
)
async def test_created_call_without_a_usable_join_url_is_a_bad_response(
    api: respx.MockRouter, body: object
) -> None:
    api.post("/calls").respond(201, json=body)
    with pytest.raises(UltravoxBadResponse):
        await (await make_client(Sleeps())).create_call({})


async def test_created_call_nested_too_deep_to_decode_is_a_bad_response(
    api: respx.MockRouter,
) -> None:
    # json raises RecursionError, not ValueError: it escaped as an internal error with a
    # traceback instead of the typed refusal the caller's fallback is logged with.
    api.post("/calls").respond(201, content=b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(UltravoxBadResponse):
        await (await make_client(Sleeps())).create_call({})


async def test_agent_call_posts_to_the_agent_with_the_api_key(api: respx.MockRouter) -> None:
    route = api.post("/agents/a-1/calls").respond(201, json=CREATED)
    await (await make_client(Sleeps())).create_agent_call("a-1", {"templateContext": {}})
    request = route.calls.last.request
    assert request.headers["x-api-key"] == "k"
    assert request.content == b'{"templateContext":{}}'


async def test_requests_are_those_httpx_builds_from_json(api: respx.MockRouter) -> None:
    """The client frames its requests itself (cached URL, ready headers, encoded body): what
    reaches the wire is what `httpx.Request(..., json=...)` would have sent, byte for byte."""
    body = {"systemPrompt": "Hé ✓", "medium": {"twilio": {}}, "maxDuration": "60s"}
    created = api.post("/calls").respond(201, json=CREATED)
    progress = api.get("/calls/c-1").respond(200, json={"callId": "c-1"})
    client = await make_client(Sleeps())
    await client.create_call(body)
    await client.create_call(body)  # the cached URL and headers again
    await client.call_progress("c-1")

    headers = {"X-API-Key": "k", "Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
    expected = httpx.Request("POST", f"{API_URL}/calls", headers=headers, json=body)
    for call in created.calls:
        assert call.request.headers.raw == expected.headers.raw
        assert call.request.content == expected.content
    expected = httpx.Request("GET", f"{API_URL}/calls/c-1", headers=headers)
    assert progress.calls.last.request.headers.raw == expected.headers.raw
    assert progress.calls.last.request.content == b""


async def test_unreachable_ultravox_is_a_connection_error_after_retries(
    api: respx.MockRouter,
) -> None:
    api.post("/calls").side_effect = httpx.ConnectError("refused")
    with pytest.raises(UltravoxConnectionError):
        await (await make_client(Sleeps(), deadline=0.05)).create_call({})


async def test_agent_id_stays_one_path_segment(api: respx.MockRouter) -> None:
    route = api.post(path__regex=r".*").respond(201, json=CREATED)
    await (await make_client(Sleeps())).create_agent_call("../calls?x=", {})
    assert route.calls.last.request.url.raw_path == b"/api/agents/..%2Fcalls%3Fx%3D/calls"


async def test_hang_up_sends_the_data_message_with_the_api_key(api: respx.MockRouter) -> None:
    route = api.post("/calls/c-1/send_data_message").respond(204)
    await (await make_client(Sleeps())).hang_up("c-1")
    request = route.calls.last.request
    assert request.headers["x-api-key"] == "k"
    assert request.headers["content-type"] == "application/json"
    assert request.content == b'{"type":"hang_up","message":""}'
    assert route.call_count == 1


async def test_hang_up_of_a_call_that_is_not_live_is_refused_at_once(
    api: respx.MockRouter,
) -> None:
    route = api.post("/calls/c-1/send_data_message").respond(422, json={"detail": "not active"})
    sleeps = Sleeps()
    with pytest.raises(UltravoxRequestError) as raised:
        await (await make_client(sleeps)).hang_up("c-1")
    assert raised.value.status_code == 422
    assert route.call_count == 1
    assert sleeps.waits == []


async def test_hang_up_is_retried_like_a_creation(api: respx.MockRouter) -> None:
    route = api.post("/calls/c-1/send_data_message")
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.Response(204),
    ]
    sleeps = Sleeps()
    await (await make_client(sleeps)).hang_up("c-1")
    assert route.call_count == 3
    assert len(sleeps.waits) == 2
    assert sleeps.waits[1] == 1.0


async def test_hang_up_without_an_answer_in_time_is_a_timeout(api: respx.MockRouter) -> None:
    route = api.post("/calls/c-1/send_data_message")
    route.side_effect = httpx.ReadTimeout("slow")
    with pytest.raises(UltravoxTimeout):
        await (await make_client(Sleeps())).hang_up("c-1")
    assert route.call_count == 1


async def test_call_progress_reads_when_the_call_was_joined_and_ended(
    api: respx.MockRouter,
) -> None:
    ended = {
        "callId": "c-1",
        "joined": "2026-11-24T10:00:02Z",
        "ended": "2026-11-24T10:01:00Z",
        "endReason": "hangup",
        "shortSummary": "a chat",
    }
    route = api.get("/calls/c-1").respond(200, json=ended)
    progress = await (await make_client(Sleeps())).call_progress("c-1")
    assert (progress.call_id, progress.joined, progress.ended, progress.end_reason) == (
        "c-1",
        "2026-11-24T10:00:02Z",
        "2026-11-24T10:01:00Z",
        "hangup",
    )
    assert route.calls.last.request.headers["x-api-key"] == "k"


async def test_call_progress_of_an_unjoined_call_has_no_times(api: respx.MockRouter) -> None:
    api.get("/calls/c-1").respond(200, json={"callId": "c-1", "joined": None, "ended": None})
    progress = await (await make_client(Sleeps())).call_progress("c-1")
    assert (progress.joined, progress.ended, progress.end_reason) == (None, None, None)


@pytest.mark.parametrize(
    "content", [b"<html>", b"[1]", b"[" * 100_000], ids=["not-json", "not-object", "too-deep"]
)
async def test_call_progress_that_is_not_a_json_object_is_a_bad_response(
    api: respx.MockRouter, content: bytes
) -> None:
    api.get("/calls/c-1").respond(200, content=content)
    with pytest.raises(UltravoxBadResponse):
        await (await make_client(Sleeps())).call_progress("c-1")


async def test_call_id_stays_one_path_segment_when_ending(api: respx.MockRouter) -> None:
    route = api.route(path__regex=r".*").respond(200, json={"callId": "x"})
    client = await make_client(Sleeps())
    await client.hang_up("../agents?x=")
    await client.call_progress("../agents?x=")
    paths = [call.request.url.raw_path for call in route.calls]
    assert paths == [
        b"/api/calls/..%2Fagents%3Fx%3D/send_data_message",
        b"/api/calls/..%2Fagents%3Fx%3D",
    ]


class StreamedAnswer(httpx.AsyncByteStream):
    """An answer that arrives in pieces and can only be read asynchronously, as httpx's own
    transport gives it."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    async def aclose(self) -> None:
        self.closed = True


class OneAnswer(httpx.AsyncBaseTransport):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.response


@pytest.mark.parametrize("asynchronous", [True, False])
async def test_an_answer_is_read_whole_whether_its_stream_is_async_only_or_in_memory(
    asynchronous: bool,
) -> None:
    body = b'{"callId": "c-1", "joinUrl": "wss://voice.ultravox.test/j"}'
    stream = StreamedAnswer(body[:10], body[10:]) if asynchronous else httpx.ByteStream(body)
    transport = OneAnswer(httpx.Response(201, stream=stream))
    client = UltravoxClient(transport, api_url=API_URL, api_key="k", deadline_seconds=1)

    call = await client.create_call({"systemPrompt": "hi"})

    assert (call.call_id, call.join_url) == ("c-1", "wss://voice.ultravox.test/j")
    assert transport.response.is_closed
    if isinstance(stream, StreamedAnswer):
        assert stream.closed
