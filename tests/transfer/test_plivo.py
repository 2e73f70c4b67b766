"""Plivo transfers end to end: the Transfer and Call APIs stood in with respx, Plivo's callbacks
signed with Signature V3 as Plivo signs them."""

import json
import logging
from pathlib import Path

import pytest
import respx

from tests.conftest import BASE_URL, PROVIDERS, Webhook, plivo_webhook, running_app
from tests.transfer.conftest import (
    PLIVO_API,
    PLIVO_AUTH_ID,
    SECOND_JOIN,
    answer_call,
    call_tool,
    expected_history,
    second_call_body,
    transfer_id_in,
    transfer_settings,
    ultravox_creates,
    ultravox_history,
)

PLIVO = PROVIDERS[2]
CALLER_UUID = PLIVO.fields()[PLIVO.call_id_field]
PERSON_REQUEST = "9834029e-58b6-11e1-8f8d-00000000c001"
PERSON_UUID = "9834029e-58b6-11e1-8f8d-00000000c002"
ACCOUNT = f"{PLIVO_API}/v1/Account/{PLIVO_AUTH_ID}"
STREAM_AGAIN = (
    '<Response><Stream bidirectional="true" contentType="audio/x-l16;rate=16000" '
    f'keepCallAlive="true">{SECOND_JOIN}</Stream></Response>'
)


def settings(tmp_path: Path, **overrides: str):  # type: ignore[no-untyped-def]
    return transfer_settings(tmp_path / "r.yaml", plivo_auth_token="plivo-test-token", **overrides)


def callback(transfer_id: str, step: str, call_uuid: str = CALLER_UUID, **fields: str) -> Webhook:
    return plivo_webhook(
        {"CallUUID": call_uuid, **fields}, path=f"/transfer/plivo/{transfer_id}/{step}"
    )


def plivo_moves_the_caller(apis: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    transfer = apis.post(f"{ACCOUNT}/Call/{CALLER_UUID}/").respond(
        202, json={"message": "call transferred", "api_id": "a-1"}
    )
    stream_stop = apis.delete(f"{ACCOUNT}/Call/{CALLER_UUID}/Stream/").respond(204)
    return transfer, stream_stop


async def test_cold_transfer_moves_the_caller_to_a_dial_and_ends_when_answered(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    transfer, stream_stop = plivo_moves_the_caller(apis)
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, PLIVO, creates)
        response = await call_tool(client, access, "sales")
        assert response.json() == {"result": "transferring"}
        moved = json.loads(transfer.calls.last.request.content)
        transfer_id = transfer_id_in(moved["aleg_url"])
        base = f"{BASE_URL}/transfer/plivo/{transfer_id}"
        assert moved == {"legs": "aleg", "aleg_url": f"{base}/dial", "aleg_method": "POST"}
        assert stream_stop.call_count == 1
        dial = await callback(transfer_id, "dial").send(client)
        assert dial.text == (
            f'<Response><Dial action="{base}/dialed" method="POST" timeout="20" '
            'callerId="15005550001" redirect="true"><Number>15005550100</Number></Dial>'
            "</Response>"
        )
        done = await callback(transfer_id, "dialed", DialStatus="completed").send(client)
    assert done.text == "<Response><Hangup/></Response>"
    assert creates.call_count == 1


@pytest.mark.parametrize("status", ["no-answer", "busy", "timeout"])
async def test_cold_transfer_not_answered_returns_the_caller_to_the_agent(
    tmp_path: Path, apis: respx.MockRouter, status: str
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    transfer, _ = plivo_moves_the_caller(apis)
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, PLIVO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(transfer.calls.last.request.content)["aleg_url"])
        response = await callback(transfer_id, "dialed", DialStatus=status).send(client)
    assert response.text == STREAM_AGAIN
    assert second_call_body(creates)["initialMessages"] == expected_history()


async def test_warm_transfer_rings_whispers_and_joins_the_person(
    tmp_path: Path, apis: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.transfer")
    creates = ultravox_creates(apis)
    person = apis.post(f"{ACCOUNT}/Call/").respond(
        201, json={"message": "call fired", "request_uuid": PERSON_REQUEST, "api_id": "a-2"}
    )
    transfer, _ = plivo_moves_the_caller(apis)
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, PLIVO, creates)
        assert (await call_tool(client, access, "person")).json() == {"result": "transferring"}
        rung = json.loads(person.calls.last.request.content)
        transfer_id = transfer_id_in(rung["answer_url"])
        base = f"{BASE_URL}/transfer/plivo/{transfer_id}"
        assert rung == {
            "from": "15005550001",
            "to": "15005550101",
            "answer_url": f"{base}/whisper",
            "answer_method": "POST",
            "hangup_url": f"{base}/person",
            "hangup_method": "POST",
            "ring_timeout": 25,
        }
        assert json.loads(transfer.calls.last.request.content)["aleg_url"] == f"{base}/hold"
        hold = await callback(transfer_id, "hold").send(client)
        assert hold.text == (
            '<Response><Conference startConferenceOnEnter="false" endConferenceOnExit="true">'
            f"transfer-{transfer_id}</Conference></Response>"
        )
        whisper = await callback(transfer_id, "whisper", PERSON_UUID).send(client)
        assert whisper.text == (
            f'<Response><GetInput action="{base}/accept" method="POST" inputType="dtmf" '
            'digitEndTimeout="8" numDigits="1" redirect="true"><Speak>The assistant is '
            "transferring a caller to you. Reason: wants a quote. Ada wants ten licences. "
            "Press 1 to take the call, or any other key to decline.</Speak></GetInput>"
            "<Speak>No key was "
            "pressed. Goodbye.</Speak><Hangup/></Response>"
        )
        accepted = await callback(transfer_id, "accept", PERSON_UUID, Digits="1").send(client)
        assert accepted.text == (
            '<Response><Conference startConferenceOnEnter="true" endConferenceOnExit="true">'
            f"transfer-{transfer_id}</Conference></Response>"
        )
        await callback(transfer_id, "person", PERSON_UUID, CallStatus="completed").send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
    assert creates.call_count == 1
    steps = [r.getMessage() for r in caplog.records if r.name == "app.transfer"]
    assert steps == ["transfer.requested", "transfer.started", "transfer.connected"]


async def test_warm_transfer_declined_returns_the_caller_through_the_agent_url(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    person = apis.post(f"{ACCOUNT}/Call/").respond(
        201, json={"message": "call fired", "request_uuid": PERSON_REQUEST, "api_id": "a-2"}
    )
    transfer, _ = plivo_moves_the_caller(apis)
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, PLIVO, creates)
        await call_tool(client, access, "person")
        transfer_id = transfer_id_in(json.loads(person.calls.last.request.content)["answer_url"])
        declined = await callback(transfer_id, "accept", PERSON_UUID, Digits="9").send(client)
        assert declined.text == (
            "<Response><Speak>The caller goes back to the assistant. Goodbye.</Speak>"
            "<Hangup/></Response>"
        )
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
        returned = json.loads(transfer.calls.last.request.content)
        assert returned["aleg_url"] == f"{BASE_URL}/transfer/plivo/{transfer_id}/agent"
        agent = await callback(transfer_id, "agent").send(client)
        again = await callback(transfer_id, "agent").send(client)
    assert agent.text == STREAM_AGAIN
    assert again.status_code == 404  # served once
    assert "(they declined the call)" in second_call_body(creates)["systemPrompt"]


async def test_forged_plivo_callback_is_refused(tmp_path: Path, apis: respx.MockRouter) -> None:
    creates = ultravox_creates(apis)
    transfer, _ = plivo_moves_the_caller(apis)
    async with running_app(settings(tmp_path)) as client:
        access = await answer_call(client, PLIVO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(transfer.calls.last.request.content)["aleg_url"])
        forged = plivo_webhook(
            {"CallUUID": CALLER_UUID, "DialStatus": "busy"},
            path=f"/transfer/plivo/{transfer_id}/dialed",
            token="not-the-token",
        )
        response = await forged.send(client)
    assert response.status_code == 403
    assert creates.call_count == 1
