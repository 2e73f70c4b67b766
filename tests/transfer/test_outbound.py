"""Outbound calls of a route with `transfer:` get the transfer tool, bound to the call the
provider placed; providers whose dialer does not name the call transfers address get none."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import responses
import respx

from tests.conftest import API_URL, TELNYX_PUBLIC_KEY, running_app
from tests.outbound_mocks import (
    AUTH,
    CALLEE,
    TELNYX_CONNECTION_ID,
    TWILIO_CALL_SID,
    telnyx_accepts,
    twilio_accepts,
)
from tests.transfer.conftest import (
    FIRST_CALL,
    FIRST_JOIN,
    OUR_NUMBER,
    TWILIO_API,
    TWILIO_SID,
    ToolAccess,
    call_tool,
    form_of,
    transfer_id_in,
    transfer_settings,
)

OUTBOUND = {
    "bridge_api_tokens": AUTH["Authorization"].removeprefix("Bearer "),
    "twilio_from_number": OUR_NUMBER,
    "telnyx_connection_id": TELNYX_CONNECTION_ID,
    "telnyx_from_number": OUR_NUMBER,
    "telnyx_api_url": "https://api.telnyx.com",
}


@pytest.fixture
def requests_apis() -> Iterator[responses.RequestsMock]:
    """Twilio's SDK (requests-based) placing the call, mocked at the HTTP level."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def ultravox_creates_one(apis: respx.MockRouter) -> respx.Route:
    return apis.post(f"{API_URL}/calls").mock(
        return_value=httpx.Response(201, json={"callId": FIRST_CALL, "joinUrl": FIRST_JOIN})
    )


async def test_an_outbound_call_of_a_transfer_route_can_be_transferred(
    tmp_path: Path, apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    creates = ultravox_creates_one(apis)
    twilio_accepts(requests_apis)
    update = apis.post(
        f"{TWILIO_API}/2010-04-01/Accounts/{TWILIO_SID}/Calls/{TWILIO_CALL_SID}.json"
    )
    update.respond(200, json={"sid": TWILIO_CALL_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml", **OUTBOUND)) as client:
        placed = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
        assert placed.status_code == 201
        body = json.loads(creates.calls.last.request.content)
        (tool,) = body["selectedTools"]
        access = ToolAccess(
            tool["temporaryTool"]["http"]["baseUrlPattern"],
            tool["temporaryTool"]["staticParameters"][0]["value"],
            tool["authTokens"]["bridgeTransferToken"],
            FIRST_CALL,
        )
        response = await call_tool(client, access, "sales")
    assert body["firstSpeakerSettings"] == {"user": {}}  # still an outbound call
    assert tool["temporaryTool"]["dynamicParameters"][0]["schema"]["enum"] == [
        "sales",
        "person",
        "night-desk",
    ]
    assert response.json() == {"result": "transferring"}
    # The call updated is the one Twilio placed: the tool was bound to its SID once dialled.
    twiml = form_of(update.calls.last.request)["Twiml"]
    assert f"/transfer/twilio/{transfer_id_in(twiml)}/dialed" in twiml
    assert "<Number>+15005550100</Number>" in twiml


async def test_an_outbound_call_whose_provider_cannot_address_it_gets_no_tool(
    tmp_path: Path, apis: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    creates = ultravox_creates_one(apis)
    telnyx_accepts(apis)
    routes = """
routes:
  - name: support
    number: "+15005550001"
    inline: {systemPrompt: You answer the support line.}
    transfer:
      targets:
        sales: {number: "+15005550100"}
"""
    settings = transfer_settings(
        tmp_path / "r.yaml", routes, telnyx_public_key=TELNYX_PUBLIC_KEY, **OUTBOUND
    )
    async with running_app(settings) as client:
        # Telnyx transfers its inbound calls (TeXML); the calls it places are Call Control's.
        assert "telnyx" in client.app.state.transfers.drivers  # type: ignore[attr-defined]
        with caplog.at_level("WARNING", logger="app.transfer"):
            placed = await client.post(
                "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
            )
    assert placed.status_code == 201
    assert "selectedTools" not in json.loads(creates.calls.last.request.content)
    [unavailable] = caplog.records
    assert unavailable.getMessage() == "transfer.unavailable"
    assert unavailable.fields == {  # type: ignore[attr-defined]
        "provider": "telnyx",
        "route": "support",
        "outbound": True,
    }
