"""Telnyx transfers: the TeXML call update stood in with respx, Telnyx's callbacks signed with
Ed25519 as Telnyx signs them. Telnyx transfers are cold only."""

import json
from pathlib import Path

import pytest
import respx
from nacl.signing import SigningKey

from app.settings import ConfigError
from tests.conftest import (
    BASE_URL,
    PROVIDERS,
    TELNYX_PUBLIC_KEY,
    Webhook,
    running_app,
    telnyx_webhook,
)
from tests.transfer.conftest import (
    ROUTES,
    SECOND_JOIN,
    TELNYX_API,
    TELNYX_API_KEY,
    answer_call,
    call_tool,
    expected_history,
    second_call_body,
    transfer_id_in,
    transfer_settings,
    ultravox_creates,
    ultravox_history,
)

TELNYX = PROVIDERS[1]
FIELDS = TELNYX.fields()
CALL_URL = f"{TELNYX_API}/v2/texml/Accounts/{FIELDS['AccountSid']}/Calls/{FIELDS['CallSid']}"
COLD_ROUTES = """
routes:
  - name: support
    number: "+15005550001"
    provider: telnyx
    inline: {systemPrompt: You answer the support line.}
    transfer:
      targets:
        sales: {number: "+15005550100", ring_timeout_seconds: 30}
"""


def settings(tmp_path: Path, routes: str = COLD_ROUTES):  # type: ignore[no-untyped-def]
    return transfer_settings(tmp_path / "r.yaml", routes, telnyx_public_key=TELNYX_PUBLIC_KEY)


def callback(transfer_id: str, step: str, **fields: str) -> Webhook:
    return telnyx_webhook(
        {"CallSid": FIELDS["CallSid"], "AccountSid": FIELDS["AccountSid"], **fields},
        method="POST",
        path=f"/transfer/telnyx/{transfer_id}/{step}",
    )


async def test_cold_transfer_updates_the_texml_call_and_ends_when_answered(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    update = apis.post(CALL_URL).respond(200, json={"status": "in-progress"})
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, TELNYX, creates)
        assert (await call_tool(client, access, "sales")).json() == {"result": "transferring"}
        sent = update.calls.last.request
        assert sent.headers["authorization"] == f"Bearer {TELNYX_API_KEY}"
        texml = json.loads(sent.content)["Texml"]
        transfer_id = transfer_id_in(texml)
        assert texml == (
            "<?xml version='1.0' encoding='utf-8'?>\n<Response><Dial "
            f'action="{BASE_URL}/transfer/telnyx/{transfer_id}/dialed" method="POST" '
            'timeout="30"><Number>+15005550100</Number></Dial></Response>'
        )
        done = await callback(transfer_id, "dialed", DialCallStatus="completed").send(client)
    assert done.text.endswith("<Response><Hangup /></Response>")
    assert creates.call_count == 1


async def test_cold_transfer_not_answered_returns_the_caller_to_the_agent(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    update = apis.post(CALL_URL).respond(200, json={})
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, TELNYX, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(update.calls.last.request.content)["Texml"])
        response = await callback(transfer_id, "dialed", DialCallStatus="no-answer").send(client)
        forged = telnyx_webhook(
            {"CallSid": FIELDS["CallSid"], "DialCallStatus": "busy"},
            method="POST",
            path=f"/transfer/telnyx/{transfer_id}/dialed",
            key=SigningKey(b"\x02" * 32),
        )
        refused = await forged.send(client)
    assert f'<Stream url="{SECOND_JOIN}" bidirectionalMode="rtp"' in response.text
    assert second_call_body(creates)["initialMessages"] == expected_history()
    assert refused.status_code == 403
    assert creates.call_count == 2


async def test_warm_targets_on_telnyx_calls_are_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="telnyx calls cannot be transferred in warm mode"):
        async with running_app(settings(tmp_path, ROUTES)):
            pass
