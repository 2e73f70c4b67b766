"""Telnyx transfers: the TeXML Calls API stood in with respx, Telnyx's callbacks signed with
Ed25519 as Telnyx signs them, for cold and warm transfers."""

import json
from pathlib import Path

import pytest
import respx
from nacl.signing import SigningKey

from tests.conftest import (
    BASE_URL,
    PROVIDERS,
    TELNYX_PUBLIC_KEY,
    Webhook,
    running_app,
    telnyx_webhook,
)
from tests.transfer.conftest import (
    OUR_NUMBER,
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


CALLS_URL = f"{TELNYX_API}/v2/texml/Accounts/{FIELDS['AccountSid']}/Calls"
PERSON_SID = "v3:telnyx-person-0002"
WARM_ROUTES = COLD_ROUTES.replace(
    "ring_timeout_seconds: 30}", "ring_timeout_seconds: 30, mode: warm}"
)


async def test_warm_transfer_holds_the_caller_whispers_and_joins_the_person(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    person = apis.post(CALLS_URL).respond(200, json={"from": OUR_NUMBER, "status": "queued"})
    hold = apis.post(CALL_URL).respond(200, json={})
    async with running_app(settings(tmp_path, WARM_ROUTES)) as client:
        access = await answer_call(client, TELNYX, creates)
        assert (await call_tool(client, access, "sales")).json() == {"result": "transferring"}

        dialled = json.loads(person.calls.last.request.content)
        transfer_id = transfer_id_in(dialled["Url"])
        base = f"{BASE_URL}/transfer/telnyx/{transfer_id}"
        assert dialled == {
            "ApplicationSid": FIELDS["ConnectionId"],
            "To": "+15005550100",
            "From": OUR_NUMBER,
            "Url": f"{base}/whisper",
            "UrlMethod": "POST",
            "Timeout": 30,
            "StatusCallback": f"{base}/person",
            "StatusCallbackMethod": "POST",
        }
        assert json.loads(hold.calls.last.request.content)["Texml"] == (
            "<?xml version='1.0' encoding='utf-8'?>\n<Response><Dial><Conference beep=\"false\" "
            'startConferenceOnEnter="false" endConferenceOnExit="true">'
            f"transfer-{transfer_id}</Conference></Dial></Response>"
        )
        ringing = callback(transfer_id, "person", CallSid=PERSON_SID, CallStatus="ringing")
        rung = await ringing.send(client)  # not the end of the person's call: nothing happens
        whisper = await callback(transfer_id, "whisper", CallSid=PERSON_SID).send(client)
        assert whisper.text == (
            "<?xml version='1.0' encoding='utf-8'?>\n<Response><Gather "
            f'action="{base}/accept" method="POST" numDigits="1" timeout="8"><Say>The '
            "assistant is transferring a caller to you. Reason: wants a quote. Ada wants ten "
            "licences. Press 1 to take the call, or any other key to decline.</Say></Gather>"
            "<Say>No key was pressed. Goodbye.</Say><Hangup /></Response>"
        )
        accepted = await callback(transfer_id, "accept", CallSid=PERSON_SID, Digits="1").send(
            client
        )
        ended = callback(transfer_id, "person", CallSid=PERSON_SID, CallStatus="completed")
        await ended.send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
        metrics = (await client.get("/metrics")).text
    assert rung.text == "<?xml version='1.0' encoding='utf-8'?>\n<Response />"
    assert accepted.text == (
        "<?xml version='1.0' encoding='utf-8'?>\n<Response><Dial><Conference beep=\"false\" "
        'startConferenceOnEnter="true" endConferenceOnExit="true">'
        f"transfer-{transfer_id}</Conference></Dial></Response>"
    )
    assert creates.call_count == 1  # nobody went back to an agent
    assert hold.call_count == 1
    assert 'bridge_transfers_total{mode="warm",outcome="connected",provider="telnyx"} 1.0' in (
        metrics
    )


@pytest.mark.parametrize(
    ("step", "fields"),
    [("accept", {"Digits": "2"}), ("person", {"CallStatus": "no-answer"})],
    ids=["declined", "no-answer"],
)
async def test_warm_transfer_not_taken_moves_the_held_caller_to_a_new_agent(
    tmp_path: Path, apis: respx.MockRouter, step: str, fields: dict[str, str]
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    person = apis.post(CALLS_URL).respond(200, json={"status": "queued"})
    caller = apis.post(CALL_URL).respond(200, json={})
    async with running_app(settings(tmp_path, WARM_ROUTES)) as client:
        access = await answer_call(client, TELNYX, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(person.calls.last.request.content)["Url"])
        await callback(transfer_id, step, CallSid=PERSON_SID, **fields).send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
    assert caller.call_count == 2  # on hold, then back to the agent
    texml = json.loads(caller.calls.last.request.content)["Texml"]
    assert f'<Stream url="{SECOND_JOIN}" bidirectionalMode="rtp"' in texml
    assert second_call_body(creates)["initialMessages"] == expected_history()


async def test_a_caller_who_cannot_be_held_keeps_the_agent_and_the_person_hears_goodbye(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    person = apis.post(CALLS_URL).respond(200, json={"status": "queued"})
    apis.post(CALL_URL).respond(404, json={"errors": [{"detail": "call not found"}]})
    async with running_app(settings(tmp_path, WARM_ROUTES)) as client:
        access = await answer_call(client, TELNYX, creates)
        failed = await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(person.calls.last.request.content)["Url"])
        # The person's call, which the Calls API gives no id to cancel, is answered anyway.
        whisper = await callback(transfer_id, "whisper", CallSid=PERSON_SID).send(client)
    assert failed.json()["result"] == "failed"
    assert whisper.text == (
        "<?xml version='1.0' encoding='utf-8'?>\n<Response><Say>Sorry, the caller is no longer "
        "waiting. Goodbye.</Say><Hangup /></Response>"
    )
    assert creates.call_count == 1
