"""`/api/calls`: bearer tokens, filters, cursor paging, detail with timeline and transcript, and
the two ways a page learns about changes (polling `changes`, the `events` stream)."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
import uvicorn

from app.main import create_app
from app.records.changes import CallChange, TimelineEntry
from tests.conftest import API_URL, running_app
from tests.records.conftest import API_TOKEN, AUTH, records_settings
from tests.redis_server import free_port


def change(
    number: int,
    *,
    provider: str = "twilio",
    route: str = "sales",
    outcome: str = "answered",
    direction: str = "inbound",
    at: datetime | None = None,
) -> CallChange:
    when = at or datetime(2026, 12, 2, 10, 0, tzinfo=UTC) + timedelta(minutes=number)
    return CallChange(
        at=when,
        provider=provider,
        provider_call_ids=(f"call-{number}",),
        ultravox_call_id=f"uv-{number}",
        create=True,
        direction=direction,
        outcome=outcome,
        fields={"route": route},
        timeline=TimelineEntry(when, "bridge", f"webhook.{outcome}", {"route": route}),
    )


@pytest.fixture
async def client() -> httpx.AsyncClient:
    async with running_app(records_settings()) as c:
        records = c.app.state.records  # type: ignore[attr-defined]
        for number in range(5):
            await records.apply_now(change(number))
        await records.apply_now(change(5, provider="plivo", route="support", outcome="fallback"))
        await records.apply_now(change(6, direction="outbound", outcome="refused-over-limit"))
        yield c


@pytest.mark.parametrize(
    "path", ["/api/calls", "/api/calls/changes", "/api/calls/events", "/api/calls/some-id"]
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": API_TOKEN}],
)
async def test_without_a_valid_token_nothing_is_shown(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="ultravox-bridge"'
    assert response.json() == {
        "detail": "a valid API token is required: send Authorization: Bearer <token>"
    }


async def test_without_tokens_configured_the_api_is_off() -> None:
    async with running_app(records_settings(bridge_api_tokens="")) as client:
        response = await client.get("/api/calls", headers=AUTH)
    assert response.status_code == 404
    assert "set BRIDGE_API_TOKENS" in response.json()["detail"]


async def test_calls_are_listed_newest_first_a_page_at_a_time(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/calls", headers=AUTH, params=params)).json()
        seen += [call["ultravoxCallId"] for call in page["calls"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"uv-{n}" for n in (6, 5, 4, 3, 2, 1, 0)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"provider": "plivo"}, ["uv-5"]),
        ({"route": "support"}, ["uv-5"]),
        ({"outcome": "refused-over-limit"}, ["uv-6"]),
        ({"direction": "outbound"}, ["uv-6"]),
        ({"since": "2026-12-02T10:02:00Z", "until": "2026-12-02T10:04:00+00:00"}, ["uv-3", "uv-2"]),
        ({"state": "ended"}, []),
    ],
)
async def test_filters(
    client: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    page = (await client.get("/api/calls", headers=AUTH, params=params)).json()
    assert [call["ultravoxCallId"] for call in page["calls"]] == expected


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"since": "yesterday"},
        {"since": "2026-12-02T10:00:00"},
        {"outcome": "exploded"},
        {"limit": "0"},
        {"limit": "201"},
        {"direction": "sideways"},
        {"route": "r" * 129},
    ],
)
async def test_bad_parameters_are_refused(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/api/calls", headers=AUTH, params=params)
    assert response.status_code == 422


async def test_detail_has_the_timeline_and_the_transcript_on_demand(
    client: httpx.AsyncClient,
) -> None:
    [call] = (await client.get("/api/calls", headers=AUTH, params={"limit": 1})).json()["calls"]
    plain = (await client.get(f"/api/calls/{call['id']}", headers=AUTH)).json()
    assert plain["call"] == call
    assert plain["timeline"] == [
        {
            "at": "2026-12-02T10:06:00Z",
            "source": "bridge",
            "kind": "webhook.refused-over-limit",
            "detail": {"route": "sales"},
        }
    ]
    assert "transcript" not in plain
    with respx.mock(base_url=API_URL) as mock:
        # The page with a cursor first: respx takes the first route whose params match.
        second = mock.get(
            "/calls/uv-6/messages", params={"pageSize": "200", "cursor": "abc"}
        ).respond(200, json={"results": [{"role": "MESSAGE_ROLE_USER", "text": "Hi"}]})
        first = mock.get("/calls/uv-6/messages", params={"pageSize": "200"}).respond(
            200,
            json={
                "results": [{"role": "MESSAGE_ROLE_AGENT", "text": "Hello!", "medium": "voice"}],
                "next": f"{API_URL}/calls/uv-6/messages?cursor=abc&pageSize=200",
            },
        )
        detail = await client.get(
            f"/api/calls/{call['id']}", headers=AUTH, params={"transcript": "true"}
        )
    assert first.call_count == second.call_count == 1
    assert detail.json()["transcript"] == [
        {"role": "agent", "text": "Hello!", "toolName": None, "medium": "voice", "timespan": None},
        {"role": "user", "text": "Hi", "toolName": None, "medium": None, "timespan": None},
    ]


async def test_a_transcript_ultravox_cannot_give_is_said_so(client: httpx.AsyncClient) -> None:
    [call] = (await client.get("/api/calls", headers=AUTH, params={"limit": 1})).json()["calls"]
    with respx.mock(base_url=API_URL) as mock:
        mock.get("/calls/uv-6/messages").respond(404, json={"detail": "Not found."})
        detail = await client.get(
            f"/api/calls/{call['id']}", headers=AUTH, params={"transcript": "true"}
        )
    assert detail.status_code == 200
    assert detail.json()["transcript"] is None
    assert detail.json()["transcriptError"].startswith("Ultravox: Ultravox answered 404")


async def test_an_unknown_record_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/calls/0000", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "no call record with this id"}


async def test_polling_for_changes(client: httpx.AsyncClient) -> None:
    start = (await client.get("/api/calls/changes", headers=AUTH)).json()
    assert start["calls"] == []
    records = client.app.state.records  # type: ignore[attr-defined]
    ended = CallChange(
        at=datetime.now(UTC), ultravox_call_id="uv-2", ends=True, ended_by="ultravox"
    )
    await records.apply_now(ended)
    changed = (
        await client.get("/api/calls/changes", headers=AUTH, params={"after": start["next"]})
    ).json()
    assert [(c["ultravoxCallId"], c["state"]) for c in changed["calls"]] == [("uv-2", "ended")]
    again = (
        await client.get("/api/calls/changes", headers=AUTH, params={"after": changed["next"]})
    ).json()
    assert again["calls"] == []


async def test_the_event_stream_sends_a_call_as_it_changes() -> None:
    # A real server on loopback: httpx's in-process transport holds a response until it ends.
    app = create_app(records_settings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        records = app.state.records
        await records.apply_now(change(1))  # before the stream: not sent
        received: list[dict[str, object]] = []
        opened = asyncio.Event()

        async def listen() -> None:
            url = f"http://127.0.0.1:{port}/api/calls/events"
            async with (
                httpx.AsyncClient() as http,
                http.stream("GET", url, headers=AUTH) as stream,
            ):
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    opened.set()
                    if line.startswith("data: "):
                        received.append(json.loads(line.removeprefix("data: ")))
                        return

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(opened.wait(), 10)
        await records.apply_now(change(7, route="night"))
        await asyncio.wait_for(listener, 10)
    finally:
        server.should_exit = True
        await serving
    assert [(call["ultravoxCallId"], call["route"]) for call in received] == [("uv-7", "night")]


async def test_ten_thousand_unauthenticated_requests_are_refused(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(10_000):
        response = await client.get("/api/calls")
        assert response.status_code == 401
