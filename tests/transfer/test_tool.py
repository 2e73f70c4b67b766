"""The transfer tool as Ultravox sees it: its definition in the call request, and the endpoint's
refusals (no, wrong or another call's credential), opening hours, and one transfer at a time."""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import respx

from app.transfer.tool import mint_token
from tests.conftest import PROVIDERS, running_app
from tests.transfer.conftest import (
    FIRST_CALL,
    SECRET,
    TWILIO_API,
    TWILIO_SID,
    ToolAccess,
    answer_call,
    call_tool,
    form_of,
    transfer_settings,
    ultravox_creates,
)

TWILIO = PROVIDERS[0]
CALLER_SID = TWILIO.fields()[TWILIO.call_id_field]
CALLER_URL = f"{TWILIO_API}/2010-04-01/Accounts/{TWILIO_SID}/Calls/{CALLER_SID}.json"


async def test_route_with_transfer_gives_its_calls_the_tool(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
    (tool,) = json.loads(creates.calls[0].request.content)["selectedTools"]
    definition = tool["temporaryTool"]
    assert access.token == mint_token(SECRET.encode(), access.session)
    assert tool["authTokens"] == {"bridgeTransferToken": access.token}
    assert definition["http"] == {
        "baseUrlPattern": "http://bridge.test/transfer/tool",
        "httpMethod": "POST",
    }
    assert definition["modelToolName"] == "transferCall"
    assert definition["timeout"] == "20s"
    target, reason, summary = definition["dynamicParameters"]
    assert target["schema"]["enum"] == ["sales", "person", "night-desk"]
    assert (reason["name"], summary["name"]) == ("reason", "summary")
    assert definition["automaticParameters"] == [
        {
            "name": "callId",
            "location": "PARAMETER_LOCATION_BODY",
            "knownValue": "KNOWN_PARAM_CALL_ID",
        }
    ]
    assert definition["requirements"] == {
        "httpSecurityOptions": {
            "options": [
                {
                    "requirements": {
                        "bridgeTransferToken": {"headerApiKey": {"name": "X-Bridge-Transfer-Token"}}
                    }
                }
            ]
        }
    }


async def test_route_without_transfer_gets_no_tool(tmp_path: Path, apis: respx.MockRouter) -> None:
    routes = """
    routes:
      - number: "+15005550001"
        inline: {systemPrompt: Hi.}
    """
    creates = ultravox_creates(apis)
    async with running_app(transfer_settings(tmp_path / "r.yaml", routes)) as client:
        await TWILIO.webhook(TWILIO.fields()).send(client)
        tool = await client.post(
            "/transfer/tool", json={}, headers={"X-Bridge-Transfer-Token": "x"}
        )
    assert "selectedTools" not in json.loads(creates.calls[0].request.content)
    assert tool.status_code == 404


async def test_tool_calls_without_the_calls_credential_are_refused(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    update = apis.post(CALLER_URL).respond(200, json={})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        none = await client.post(access.url, json=access.body())
        wrong = await call_tool(
            client, ToolAccess(access.url, access.session, "x" * 43, FIRST_CALL)
        )
        # A credential minted with another secret, for this call's session.
        forged = mint_token(b"another-secret-0123456789abcdef0123", access.session)
        other_secret = await call_tool(
            client, ToolAccess(access.url, access.session, forged, FIRST_CALL)
        )
        # A valid credential of another call (its own session) naming this call's id.
        other_session = "another-call-session"
        other_call = await call_tool(
            client,
            ToolAccess(
                access.url,
                other_session,
                mint_token(SECRET.encode(), other_session),
                FIRST_CALL,
            ),
        )
        # This call's credential naming a call id the service never recorded.
        unknown_call = await call_tool(
            client, ToolAccess(access.url, access.session, access.token, "some-other-call")
        )
        malformed = await client.post(
            access.url, content=b"{", headers={"X-Bridge-Transfer-Token": access.token}
        )
        huge = await client.post(
            access.url,
            content=b"x" * (17 * 1024),
            headers={"X-Bridge-Transfer-Token": access.token},
        )
    for refused in (none, wrong, other_secret, other_call, unknown_call):
        assert refused.status_code == 403
        assert refused.json() == {"result": "forbidden"}
    assert malformed.status_code == 400
    assert huge.status_code == 413
    assert update.call_count == 0


async def test_two_transfer_requests_at_once_make_one_transfer(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow_twilio(request: httpx.Request) -> httpx.Response:
        entered.set()
        await release.wait()
        return httpx.Response(200, json={})

    update = apis.post(CALLER_URL).mock(side_effect=slow_twilio)
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        first = asyncio.create_task(call_tool(client, access, "sales"))
        await entered.wait()
        second = await call_tool(client, access, "sales")
        release.set()
        first_response = await first
    assert first_response.json() == {"result": "transferring"}
    assert second.json() == {"result": "already_transferring"}
    assert second.headers["x-ultravox-agent-reaction"] == "listens"
    assert update.call_count == 1


async def test_closed_target_is_not_dialled_and_the_agent_carries_on(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    update = apis.post(CALLER_URL).respond(200, json={})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        desk = client.app.state.transfers  # type: ignore[attr-defined]
        desk._now = lambda: datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # a Saturday
        closed = await call_tool(client, access, "night-desk")
        desk._now = lambda: datetime(2026, 12, 7, 8, 30, tzinfo=UTC)  # Monday 09:30 in Berlin
        opened = await call_tool(client, access, "night-desk")
    assert closed.status_code == 200
    assert closed.headers["x-ultravox-agent-reaction"] == "speaks"
    assert closed.json() == {
        "result": "closed",
        "message": "night-desk is closed now (open mon-fri 09:00-17:00 (Europe/Berlin)). Tell "
        "the caller and keep helping; offer to take a message.",
    }
    assert opened.json() == {"result": "transferring"}
    assert "<Sip>sip:desk@pbx.example.com</Sip>" in form_of(update.calls.last.request)["Twiml"]


async def test_unknown_target_and_provider_refusal_are_told_to_the_agent(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    apis.post(CALLER_URL).respond(401, json={"message": "Authenticate"})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        unknown = await call_tool(client, access, "ceo")
        refused = await call_tool(client, access, "sales")
        metrics = (await client.get("/metrics")).text
    assert unknown.json()["result"] == "unknown_target"
    assert refused.json()["result"] == "failed"
    assert refused.headers["x-ultravox-agent-reaction"] == "speaks"
    assert (
        'bridge_transfers_total{mode="cold",outcome="provider_error",provider="twilio"}' in metrics
    )
    assert creates.call_count == 1
