"""`POST /ultravox/events`: only Ultravox's signed, recent webhooks change a record; everything
else is refused with its status and leaves no trace."""

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from app.records.signing import signature
from tests.conftest import running_app
from tests.records.conftest import (
    AUTH,
    records_settings,
    send_event,
    ultravox_event,
    uv_call,
)

CALL_SID = "CA0000000000000000000000000000ev01"


async def records_count(client: httpx.AsyncClient) -> int:
    return len(
        (await client.get("/api/calls", headers=AUTH, params={"limit": 200})).json()["calls"]
    )


@pytest.fixture
async def client() -> httpx.AsyncClient:
    async with running_app(records_settings()) as c:
        yield c


async def test_a_signed_event_of_a_bridge_call_makes_its_record(client: httpx.AsyncClient) -> None:
    response = await send_event(client, "call.started", uv_call("uv-1", "twilio", CALL_SID))
    assert response.status_code == 204
    [record] = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
    assert (record["ultravoxCallId"], record["providerCallId"], record["outcome"]) == (
        "uv-1",
        CALL_SID,
        "pending",
    )


async def test_an_event_of_a_call_the_bridge_did_not_create_is_ignored(
    client: httpx.AsyncClient,
) -> None:
    # Account webhooks report every call of the account, console calls included.
    response = await send_event(client, "call.ended", {"callId": "uv-console", "metadata": {}})
    assert response.status_code == 204
    assert await records_count(client) == 0


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing signature or timestamp header"),
        ({"X-Ultravox-Webhook-Signature": "00" * 32}, "missing signature or timestamp header"),
        (
            {"X-Ultravox-Webhook-Signature": "00" * 32, "X-Ultravox-Webhook-Timestamp": "nope"},
            "unreadable timestamp",
        ),
    ],
)
async def test_unsigned_events_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str], reason: str
) -> None:
    body = json.dumps({"event": "call.started", "call": uv_call("uv-2", "twilio", CALL_SID)})
    response = await client.post("/ultravox/events", content=body, headers=headers)
    assert (response.status_code, response.text) == (403, f"Ultravox webhook refused: {reason}\n")
    assert await records_count(client) == 0


async def test_an_event_signed_with_another_secret_is_refused(client: httpx.AsyncClient) -> None:
    response = await send_event(
        client, "call.started", uv_call("uv-3", "twilio", CALL_SID), secret="not-the-secret"
    )
    assert (response.status_code, response.text) == (
        403,
        "Ultravox webhook refused: signature does not match\n",
    )
    assert await records_count(client) == 0


async def test_a_signed_body_changed_on_the_way_is_refused(client: httpx.AsyncClient) -> None:
    body, headers = ultravox_event("call.started", uv_call("uv-4", "twilio", CALL_SID))
    forged = body.replace(b"uv-4", b"uv-5")
    response = await client.post("/ultravox/events", content=forged, headers=headers)
    assert response.status_code == 403
    assert await records_count(client) == 0


@pytest.mark.parametrize("skew", [timedelta(seconds=-61), timedelta(seconds=61)])
async def test_stale_or_future_timestamps_are_refused(
    client: httpx.AsyncClient, skew: timedelta
) -> None:
    response = await send_event(
        client,
        "call.started",
        uv_call("uv-6", "twilio", CALL_SID),
        at=datetime.now(UTC) + skew,
    )
    assert response.status_code == 403
    assert "too old or in the future" in response.text
    assert await records_count(client) == 0


async def test_a_replayed_event_changes_nothing_more(client: httpx.AsyncClient) -> None:
    call = uv_call("uv-7", "twilio", CALL_SID, ended="2026-12-02T10:01:00Z", endReason="hangup")
    body, headers = ultravox_event("call.ended", call)
    first = await client.post("/ultravox/events", content=body, headers=headers)
    again = await client.post("/ultravox/events", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (204, 204)
    [record] = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
    detail = (await client.get(f"/api/calls/{record['id']}", headers=AUTH)).json()
    assert [event["kind"] for event in detail["timeline"]] == ["call.ended"]
    assert detail["call"]["endedAt"] == "2026-12-02T10:01:00Z"


async def test_any_of_several_signatures_and_secrets_is_enough() -> None:
    # Rotation: the service knows two secrets, Ultravox signs with two (one unknown here).
    settings = records_settings(ultravox_webhook_secrets="old-secret-0001,new-secret-0002")
    body = json.dumps({"event": "call.started", "call": uv_call("uv-8", "plivo", "p-1")}).encode()
    timestamp = datetime.now(UTC).isoformat()
    header = (
        f"{signature('unknown', body, timestamp)},{signature('new-secret-0002', body, timestamp)}"
    )
    async with running_app(settings) as client:
        response = await client.post(
            "/ultravox/events",
            content=body,
            headers={
                "X-Ultravox-Webhook-Timestamp": timestamp,
                "X-Ultravox-Webhook-Signature": header,
            },
        )
        assert response.status_code == 204
        assert await records_count(client) == 1


async def test_a_huge_body_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body, headers = ultravox_event("call.started", uv_call("uv-9", "twilio", CALL_SID))
    huge = body + b" " * (256 * 1024)
    response = await client.post("/ultravox/events", content=huge, headers=headers)
    assert (response.status_code, response.text) == (413, f"body over {256 * 1024} bytes\n")
    assert await records_count(client) == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"event": "call.exploded", "call": {}}',
        b'{"event": "call.ended"}',
        b"[" * 100_000 + b"]" * 100_000,  # nested too deep for the JSON decoder
    ],
    ids=["not_json", "list", "unknown_event", "no_call", "too_deep"],
)
async def test_signed_nonsense_is_a_bad_request(client: httpx.AsyncClient, payload: bytes) -> None:
    timestamp = datetime.now(UTC).isoformat()
    from tests.records.conftest import UV_SECRET

    headers = {
        "X-Ultravox-Webhook-Timestamp": timestamp,
        "X-Ultravox-Webhook-Signature": signature(UV_SECRET, payload, timestamp),
    }
    response = await client.post("/ultravox/events", content=payload, headers=headers)
    assert response.status_code == 400
    assert response.text.startswith("not an Ultravox call event")
    assert await records_count(client) == 0


async def test_without_secrets_the_endpoint_says_how_to_get_one() -> None:
    async with running_app(records_settings(ultravox_webhook_secrets="")) as client:
        response = await send_event(client, "call.started", uv_call("uv-10", "twilio", CALL_SID))
        assert response.status_code == 503
        assert "ultravox-webhook register" in response.text
        assert await records_count(client) == 0


async def test_ten_thousand_forged_events_are_refused_and_leave_nothing(
    client: httpx.AsyncClient,
) -> None:
    before = (
        REGISTRY.get_sample_value(
            "bridge_ultravox_events_total", {"event": "unknown", "result": "forbidden"}
        )
        or 0
    )
    started = time.perf_counter()
    for number in range(10_000):
        response = await send_event(
            client, "call.started", uv_call(f"uv-f{number}", "twilio", CALL_SID), secret="forged"
        )
        assert response.status_code == 403
    elapsed = time.perf_counter() - started
    after = REGISTRY.get_sample_value(
        "bridge_ultravox_events_total", {"event": "unknown", "result": "forbidden"}
    )
    assert after == before + 10_000
    assert await records_count(client) == 0
    assert client.app.state.records._queue.qsize() == 0  # type: ignore[attr-defined]
    print(f"10k forged events refused in {elapsed:.1f}s")
