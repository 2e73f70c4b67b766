"""Twilio transfers end to end: the webhook, the agent's tool call, Twilio's REST API (stood in
with respx) and Twilio's signed callbacks, for cold and warm transfers."""

import json
import logging
from pathlib import Path

import httpx
import pytest
import respx

from app.records.changes import record_id_for
from tests.conftest import PROVIDERS, Webhook, running_app, twilio_webhook
from tests.records.conftest import API_TOKEN, AUTH, UV_SECRET, flush, send_event, uv_call
from tests.transfer.conftest import (
    FIRST_CALL,
    OUR_NUMBER,
    PERSON,
    SECOND_CALL,
    SECOND_JOIN,
    TWILIO_API,
    TWILIO_SID,
    answer_call,
    call_tool,
    expected_history,
    form_of,
    second_call_body,
    transfer_id_in,
    transfer_settings,
    ultravox_creates,
    ultravox_history,
)

TWILIO = PROVIDERS[0]
CALLER_SID = TWILIO.fields()[TWILIO.call_id_field]
PERSON_SID = "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
CALLS = f"{TWILIO_API}/2010-04-01/Accounts/{TWILIO_SID}/Calls"
STREAM_AGAIN = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    f'<Stream url="{SECOND_JOIN}" /></Connect></Response>'
)


def callback(transfer_id: str, step: str, **fields: str) -> Webhook:
    return twilio_webhook(
        {"CallSid": CALLER_SID, "AccountSid": TWILIO_SID, **fields},
        path=f"/transfer/twilio/{transfer_id}/{step}",
    )


async def test_cold_transfer_dials_the_target_and_ends_when_they_answer(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        response = await call_tool(client, access, "sales")
        assert response.status_code == 200
        assert response.json() == {"result": "transferring"}
        assert response.headers["x-ultravox-agent-reaction"] == "listens"

        twiml = form_of(update.calls.last.request)["Twiml"]
        transfer_id = transfer_id_in(twiml)
        assert twiml == (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Dial '
            f'action="http://bridge.test/transfer/twilio/{transfer_id}/dialed" '
            'callerId="+15005550001" method="POST" timeout="20">'
            "<Number>+15005550100</Number></Dial></Response>"
        )
        answered = await callback(transfer_id, "dialed", DialCallStatus="completed").send(client)
        assert answered.status_code == 200
        assert answered.text.endswith("<Response><Hangup /></Response>")
        metrics = (await client.get("/metrics")).text
    assert creates.call_count == 1  # nobody went back to an agent
    assert (
        'bridge_transfers_total{mode="cold",outcome="connected",provider="twilio"} 1.0' in metrics
    )


async def test_a_transferred_call_s_record_ends_when_the_phone_call_does_not_the_agent(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    """The agent's Ultravox call ends as the caller goes to a person; the call's record stays
    live until Twilio reports the phone call's end, and carries Twilio's duration."""
    creates = ultravox_creates(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    settings = transfer_settings(
        tmp_path / "r.yaml", bridge_api_tokens=API_TOKEN, ultravox_webhook_secrets=UV_SECRET
    )
    record_id = record_id_for("twilio", CALLER_SID)
    agent_left = uv_call(
        FIRST_CALL,
        "twilio",
        CALLER_SID,
        joined="2026-12-02T10:00:01Z",
        ended="2026-12-02T10:00:31Z",
        endReason="hangup",
    )
    async with running_app(settings) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        await flush(client)
        assert (await send_event(client, "call.ended", agent_left)).status_code == 204
        await callback(transfer_id, "dialed", DialCallStatus="completed").send(client)
        await flush(client)
        talking = (await client.get(f"/api/calls/{record_id}", headers=AUTH)).json()["call"]
        status = {"CallSid": CALLER_SID, "AccountSid": TWILIO_SID, "CallStatus": "completed"}
        hung_up = twilio_webhook(status | {"CallDuration": "300"}, path="/twilio/status")
        assert (await hung_up.send(client)).status_code == 204
        await flush(client)
        over = (await client.get(f"/api/calls/{record_id}", headers=AUTH)).json()["call"]
    assert (talking["state"], talking["endReason"], talking["endedAt"]) == ("live", "hangup", None)
    assert (over["state"], over["endedBy"], over["durationSeconds"]) == (
        "ended",
        "provider",
        300.0,
    )


async def test_cold_transfer_nobody_answers_the_caller_returns_to_the_agent_with_the_conversation(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    history = ultravox_history(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        dialed = callback(transfer_id, "dialed", DialCallStatus="no-answer")
        first = await dialed.send(client)
        repeat = await dialed.send(client)  # Twilio repeating, or a replay

    assert first.status_code == 200
    assert first.text == STREAM_AGAIN
    assert repeat.text == STREAM_AGAIN  # the same answer; no third Ultravox call
    assert history.call_count == 1
    assert creates.call_count == 2
    body = second_call_body(creates)
    assert body["initialMessages"] == expected_history()
    assert body["systemPrompt"].startswith("You answer the support line.\n\nEarlier in this call")
    assert "(nobody answered)" in body["systemPrompt"]
    assert body["metadata"]["providerCallId"] == CALLER_SID
    # The returned caller's agent can transfer again, with a new credential.
    second_access = json.loads(creates.calls[1].request.content)["selectedTools"][0]
    assert second_access["authTokens"]["bridgeTransferToken"] != access.token


async def test_cold_transfer_returning_to_the_agent_is_on_the_call_record_timeline(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    settings = transfer_settings(
        tmp_path / "r.yaml", bridge_api_tokens=API_TOKEN, ultravox_webhook_secrets=UV_SECRET
    )
    record_id = record_id_for("twilio", CALLER_SID)
    async with running_app(settings) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        dialed = callback(transfer_id, "dialed", DialCallStatus="no-answer")
        await dialed.send(client)
        await dialed.send(client)  # a repeat adds no step
        # The steps are written by the time Ultravox reports on the agent the caller went back
        # to (seconds later in life); that report lands on the same record, which keeps the
        # first agent's id.
        await flush(client)
        joined = await send_event(
            client,
            "call.joined",
            uv_call(SECOND_CALL, "twilio", CALLER_SID, joined="2026-12-02T10:01:00Z"),
        )
        assert joined.status_code == 204
        await flush(client)
        response = await client.get(f"/api/calls/{record_id}", headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert body["call"]["ultravoxCallId"] == FIRST_CALL
    assert body["call"]["joinedAt"] == "2026-12-02T10:01:00Z"
    steps = [e for e in body["timeline"] if e["source"] == "transfer"]
    assert [e["kind"] for e in steps] == [
        "transfer.requested",
        "transfer.started",
        "transfer.unanswered",
        "transfer.returned",
    ]
    common = {"transferId": transfer_id, "target": "sales", "mode": "cold", "route": "support"}
    assert steps[0]["detail"] == {**common, "reason": "wants a quote"}
    assert steps[1]["detail"] == common
    assert steps[2]["detail"] == {**common, "status": "no-answer"}
    assert steps[3]["detail"] == {
        **common,
        "status": "no-answer",
        "newUltravoxCallId": SECOND_CALL,
        "messages": len(expected_history()),
    }
    assert "ultravox" in [e["source"] for e in body["timeline"]]
    assert PERSON not in response.text and "+15005550100" not in response.text


@pytest.mark.parametrize("status", ["busy", "failed"])
async def test_cold_transfer_to_a_busy_or_failing_target_returns_to_the_agent(
    tmp_path: Path, apis: respx.MockRouter, status: str
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        response = await callback(transfer_id, "dialed", DialCallStatus=status).send(client)
    assert response.text == STREAM_AGAIN
    expected = "(the line was busy)" if status == "busy" else "(it failed)"
    assert expected in second_call_body(creates)["systemPrompt"]


async def test_warm_transfer_whispers_then_joins_the_person_who_accepts(
    tmp_path: Path, apis: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.transfer")
    creates = ultravox_creates(apis)
    person = apis.post(f"{CALLS}.json").respond(201, json={"sid": PERSON_SID})
    hold = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    settings = transfer_settings(
        tmp_path / "r.yaml", transfer_hold_music_url="https://music.test/hold.mp3"
    )
    async with running_app(settings) as client:
        access = await answer_call(client, TWILIO, creates)
        response = await call_tool(client, access, "person")
        assert response.json() == {"result": "transferring"}

        dialled = form_of(person.calls.last.request)
        transfer_id = transfer_id_in(dialled["Url"])
        base = f"http://bridge.test/transfer/twilio/{transfer_id}"
        assert dialled == {
            "To": PERSON,
            "From": OUR_NUMBER,
            "Url": f"{base}/whisper",
            "Method": "POST",
            "Timeout": "25",
            "StatusCallback": f"{base}/person",
            "StatusCallbackMethod": "POST",
        }
        assert form_of(hold.calls.last.request)["Twiml"] == (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Conference beep="false" '
            'endConferenceOnExit="true" startConferenceOnEnter="false" '
            f'waitMethod="POST" waitUrl="{base}/music">transfer-{transfer_id}</Conference>'
            "</Dial></Response>"
        )
        music = await callback(transfer_id, "music").send(client)
        assert music.text.endswith(
            '<Response><Play loop="0">https://music.test/hold.mp3</Play></Response>'
        )
        whisper = await callback(transfer_id, "whisper", CallSid=PERSON_SID).send(client)
        assert whisper.text == (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Gather '
            f'action="{base}/accept" method="POST" numDigits="1" timeout="8"><Say>The '
            "assistant is transferring a caller to you. Reason: wants a quote. Ada wants ten "
            "licences. Press 1 to take the call, or any other key to decline.</Say></Gather>"
            "<Say>No key was pressed. Goodbye.</Say><Hangup /></Response>"
        )
        accepted = await callback(transfer_id, "accept", CallSid=PERSON_SID, Digits="1").send(
            client
        )
        assert accepted.text == (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Conference beep="false" '
            'endConferenceOnExit="true" startConferenceOnEnter="true">'
            f"transfer-{transfer_id}</Conference></Dial></Response>"
        )
        # After the conversation the person's call completes: nothing more happens.
        ended = callback(transfer_id, "person", CallSid=PERSON_SID, CallStatus="completed")
        await ended.send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
    assert creates.call_count == 1
    assert hold.call_count == 1
    steps = [r.getMessage() for r in caplog.records if r.name == "app.transfer"]
    assert steps == ["transfer.requested", "transfer.started", "transfer.connected"]


@pytest.mark.parametrize(
    ("step", "fields", "note"),
    [
        ("accept", {"Digits": "2"}, "(they declined the call)"),
        ("person", {"CallStatus": "no-answer"}, "(nobody answered)"),
        ("person", {"CallStatus": "busy"}, "(the line was busy)"),
    ],
    ids=["declined", "no-answer", "busy"],
)
async def test_warm_transfer_not_taken_returns_the_caller_to_the_agent(
    tmp_path: Path, apis: respx.MockRouter, step: str, fields: dict[str, str], note: str
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    person = apis.post(f"{CALLS}.json").respond(201, json={"sid": PERSON_SID})
    caller = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "person")
        transfer_id = transfer_id_in(form_of(person.calls.last.request)["Url"])
        response = await callback(transfer_id, step, CallSid=PERSON_SID, **fields).send(client)
        assert response.status_code == 200
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
        # The person's call then ends too: the caller is not moved twice.
        await callback(transfer_id, "person", CallSid=PERSON_SID, CallStatus="completed").send(
            client
        )
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
    assert caller.call_count == 2  # on hold, then back to the agent
    assert form_of(caller.calls.last.request) == {"Twiml": STREAM_AGAIN}
    body = second_call_body(creates)
    assert body["initialMessages"] == expected_history()
    assert note in body["systemPrompt"]
    assert creates.call_count == 2


async def test_warm_transfer_whose_caller_cannot_be_held_cancels_the_person(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    apis.post(f"{CALLS}.json").respond(201, json={"sid": PERSON_SID})
    apis.post(f"{CALLS}/{CALLER_SID}.json").respond(404, json={"message": "not found"})
    cancel = apis.post(f"{CALLS}/{PERSON_SID}.json").respond(200, json={"sid": PERSON_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        response = await call_tool(client, access, "person")
        # The claim is released: the agent may try again.
        again = await call_tool(client, access, "person")
    assert response.json()["result"] == "failed"
    assert response.headers["x-ultravox-agent-reaction"] == "speaks"
    assert form_of(cancel.calls[0].request) == {"Status": "canceled"}
    assert again.json()["result"] == "failed"


async def test_forged_twilio_callback_is_refused_and_changes_nothing(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        forged = twilio_webhook(
            {"CallSid": CALLER_SID, "DialCallStatus": "no-answer"},
            path=f"/transfer/twilio/{transfer_id}/dialed",
            token="not-the-auth-token",
        )
        refused = await forged.send(client)
        unknown = await callback("no-such-transfer", "dialed", DialCallStatus="busy").send(client)
    assert refused.status_code == 403
    assert unknown.status_code == 404
    assert creates.call_count == 1


async def test_messages_fetch_failing_still_returns_the_caller_to_an_agent(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = ultravox_creates(apis)
    apis.get(f"https://ultravox.test/api/calls/{FIRST_CALL}/messages").respond(500)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        response = await callback(transfer_id, "dialed", DialCallStatus="no-answer").send(client)
    assert response.text == STREAM_AGAIN
    assert "initialMessages" not in second_call_body(creates)


async def test_ultravox_refusing_the_new_agent_plays_the_route_fallback(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    creates = apis.post("https://ultravox.test/api/calls").mock(
        side_effect=[
            httpx.Response(201, json={"callId": FIRST_CALL, "joinUrl": "wss://x.test/j"}),
            httpx.Response(400, json={"detail": "bad"}),
        ]
    )
    ultravox_history(apis)
    update = apis.post(f"{CALLS}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        response = await TWILIO.webhook(TWILIO.fields()).send(client)
        assert response.status_code == 200
        from tests.transfer.conftest import tool_access

        access = tool_access(creates.calls[0].request)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        fallback = await callback(transfer_id, "dialed", DialCallStatus="busy").send(client)
    assert "<Say>Sorry, our assistant cannot take your call right now." in fallback.text
    assert fallback.text.endswith("<Hangup /></Response>")
