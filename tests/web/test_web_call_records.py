"""Web calls in the call records: a call a page starts is recorded like an answered phone call
without numbers (provider `web`), ended by its page or by Ultravox's report, and a call Ultravox
would not create is recorded as failed."""

import json
from pathlib import Path
from typing import Any

import httpx
import respx

from tests.conftest import AGENT_ID, CALL_ID, created_call, running_app
from tests.records.conftest import API_TOKEN, AUTH, UV_SECRET, flush, send_event
from tests.web.conftest import post_call, web_settings
from tests.web.test_end_call import EndingRoutes, end_call


def settings(tmp_path: Path) -> Any:
    return web_settings(
        tmp_path,
        bridge_api_tokens=API_TOKEN,
        ultravox_webhook_secrets=UV_SECRET,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
    )


async def records(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    await flush(client)
    answer = await client.get("/api/calls", headers=AUTH)
    assert answer.status_code == 200
    calls: list[dict[str, Any]] = answer.json()["calls"]
    return calls


async def timeline(client: httpx.AsyncClient, record_id: str) -> list[str]:
    answer = await client.get(f"/api/calls/{record_id}", headers=AUTH)
    return [entry["kind"] for entry in answer.json()["timeline"]]


def sent_metadata(route: respx.Route) -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads(route.calls[0].request.content)["metadata"]
    return metadata


async def test_a_web_call_is_recorded_and_its_page_ends_the_record(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    EndingRoutes(ultravox)
    async with running_app(settings(tmp_path)) as client:
        started = await post_call(client, {"route": "sales"})
        (live,) = await records(client)
        ended = await end_call(client, CALL_ID, {"endSecret": started.json()["endSecret"]})
        (over,) = await records(client)
        kinds = await timeline(client, over["id"])
    assert (started.status_code, ended.status_code) == (201, 204)
    web_call_id = sent_metadata(create)["providerCallId"]
    assert web_call_id.startswith("web-")
    assert {key: live[key] for key in ("provider", "providerCallId", "ultravoxCallId")} == {
        "provider": "web",
        "providerCallId": web_call_id,
        "ultravoxCallId": CALL_ID,
    }
    assert (live["direction"], live["route"], live["outcome"], live["state"]) == (
        "inbound",
        "sales",
        "answered",
        "live",
    )
    assert (live["caller"], live["called"]) == (None, None)
    assert (over["state"], over["endedBy"]) == ("ended", "page")
    assert kinds == ["web.answered", "web.ended"]


async def test_ultravox_reporting_the_end_first_ends_a_web_call_record(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    async with running_app(settings(tmp_path)) as client:
        assert (await post_call(client, {"route": "sales"})).status_code == 201
        await flush(client)
        call = {
            "callId": CALL_ID,
            "created": "2026-12-02T10:00:00Z",
            "joined": "2026-12-02T10:00:02Z",
            "ended": "2026-12-02T10:01:02Z",
            "endReason": "hangup",
            "metadata": sent_metadata(create),
        }
        assert (await send_event(client, "call.ended", call)).status_code == 204
        (record,) = await records(client)
    assert (record["provider"], record["state"], record["endedBy"]) == ("web", "ended", "ultravox")
    assert (record["endReason"], record["durationSeconds"]) == ("hangup", 60.0)


async def test_an_event_before_the_record_makes_the_web_call_s_record(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    """Ultravox's report can beat the writer (or come to another replica): the metadata names
    a web call, so the record is made, and the page's own record then lands on it."""
    call = {
        "callId": CALL_ID,
        "created": "2026-12-02T10:00:00Z",
        "metadata": {"provider": "web", "providerCallId": "web-0000", "route": "sales"},
    }
    async with running_app(settings(tmp_path)) as client:
        assert (await send_event(client, "call.started", call)).status_code == 204
        (record,) = await records(client)
    assert (record["provider"], record["providerCallId"]) == ("web", "web-0000")
    assert (record["ultravoxCallId"], record["outcome"]) == (CALL_ID, "pending")


async def test_a_web_call_ultravox_would_not_create_is_recorded_as_failed(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(
        return_value=httpx.Response(400, json={"detail": "bad"})
    )
    async with running_app(settings(tmp_path)) as client:
        refused = await post_call(client, {"route": "sales"})
        (record,) = await records(client)
        kinds = await timeline(client, record["id"])
    assert refused.status_code == 502
    assert (record["provider"], record["outcome"], record["state"]) == ("web", "failed", "ended")
    assert (record["route"], record["endedBy"], record["ultravoxCallId"]) == (
        "sales",
        "bridge",
        None,
    )
    assert kinds == ["web.failed"]


async def test_requests_refused_before_ultravox_write_no_record(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    """Refusals (unknown route, rate limits) cost nothing, not even a row: a flood of them
    must not fill the database."""
    async with running_app(settings(tmp_path)) as client:
        unknown = await post_call(client, {"route": "phone-only"})
        assert await records(client) == []
    assert unknown.status_code == 404
