"""One inbound call's record end to end, on SQLite and on PostgreSQL: the signed webhook, then
Ultravox's account webhooks, then the provider's status callback, then the summary delivered
to CALL_EVENTS_URL, signed the way Ultravox signs its own webhooks."""

import json
from datetime import UTC, datetime, timedelta

import respx

from app.records.models import utcnow
from app.records.signing import verify
from tests.conftest import (
    API_URL,
    JOIN_URL,
    created_call,
    running_app,
    twilio_fields,
    twilio_webhook,
)
from tests.records.conftest import (
    AUTH,
    EVENTS_SECRET,
    EVENTS_URL,
    flush,
    records_settings,
    send_event,
    uv_call,
)

CALL_SID = "CA00000000000000000000000000000e2e"
UV_ID = "5b1c2d4e-0000-4000-8000-00000000e2e1"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_inbound_call_record_from_webhook_to_delivered_summary(database_url: str) -> None:
    settings = records_settings(
        database_url,
        call_events_url=EVENTS_URL,
        call_events_secret=EVENTS_SECRET,
        call_events_delay_seconds=30,
    )
    joined = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    ended = joined + timedelta(seconds=63)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{API_URL}/calls").mock(return_value=created_call(call_id=UV_ID))
        receiver = mock.post(EVENTS_URL).respond(204)
        async with running_app(settings) as client:
            # 1. Twilio's webhook: answered with the stream, recorded after the answer.
            answer = await twilio_webhook(twilio_fields(CALL_SID)).send(client)
            assert answer.status_code == 200 and "<Stream" in answer.text
            await flush(client)

            # 2. Ultravox's account webhooks, one of them delivered twice (Ultravox retries).
            call = uv_call(UV_ID, "twilio", CALL_SID)
            assert (await send_event(client, "call.started", call)).status_code == 204
            call["joined"] = iso(joined)
            assert (await send_event(client, "call.joined", call)).status_code == 204
            call.update(ended=iso(ended), endReason="hangup", shortSummary="Asked for hours.")
            assert (await send_event(client, "call.ended", call)).status_code == 204
            assert (await send_event(client, "call.ended", call)).status_code == 204
            call.update(billedDuration="63.5s", billingStatus="BILLING_STATUS_BILLED")
            assert (await send_event(client, "call.billed", call)).status_code == 204

            # 3. Twilio's status callback with the phone call's own duration.
            status_fields = twilio_fields(CALL_SID) | {
                "CallStatus": "completed",
                "CallDuration": "66",
                "SequenceNumber": "0",
            }
            status = await twilio_webhook(status_fields, path="/twilio/status").send(client)
            assert status.status_code == 204

            # 4. The outbox, once the summary's delay has passed.
            outbox = client.app.state.outbox  # type: ignore[attr-defined]
            assert await outbox.send_due(utcnow() + timedelta(seconds=31)) == 1

            listing = await client.get("/api/calls", headers=AUTH)
            [listed] = listing.json()["calls"]
            detail = await client.get(f"/api/calls/{listed['id']}", headers=AUTH)

    [delivered] = receiver.calls
    request = delivered.request
    verify(
        [EVENTS_SECRET],
        request.content,
        request.headers["x-bridge-webhook-timestamp"],
        request.headers["x-bridge-webhook-signature"],
        datetime.now(UTC),
        60,
    )
    summary = json.loads(request.content)
    record_id = listed["id"]
    received_at = listed["receivedAt"]
    expected_call = {
        "id": record_id,
        "provider": "twilio",
        "providerCallId": CALL_SID,
        "ultravoxCallId": UV_ID,
        "direction": "inbound",
        "route": "default",
        "caller": "+15*******06",
        "called": "+15*******01",
        "outcome": "answered",
        "state": "ended",
        "receivedAt": received_at,
        "answeredAt": listed["answeredAt"],
        "joinedAt": iso(joined),
        "endedAt": iso(ended),
        "endedBy": "ultravox",
        "endReason": "hangup",
        "providerStatus": "completed",
        "hangupCause": None,
        "durationSeconds": 66.0,
        "billedDurationSeconds": 63.5,
        "billingStatus": "BILLING_STATUS_BILLED",
        "shortSummary": "Asked for hours.",
    }
    assert summary == {"event": "call.ended", "call": expected_call}
    assert received_at <= listed["answeredAt"] < iso(joined)

    body = detail.json()
    assert body["call"] == {
        **expected_call,
        "delivery": {"status": "delivered", "attempts": 1, "error": None},
        "updatedAt": body["call"]["updatedAt"],
    }
    assert [(e["source"], e["kind"]) for e in body["timeline"]] == [
        ("bridge", "webhook.answered"),
        ("ultravox", "call.started"),
        ("ultravox", "call.joined"),
        ("ultravox", "call.ended"),  # once, although delivered twice
        ("ultravox", "call.billed"),
        ("provider", "status.completed"),
        ("delivery", "summary.delivered"),
    ]
    assert body["timeline"][0]["detail"] == {"route": "default"}
    assert body["timeline"][3]["detail"] == {"endReason": "hangup"}
    assert body["timeline"][5]["detail"] == {"status": "completed", "durationSeconds": 66.0}


async def test_the_answer_does_not_wait_for_the_record(database_url: str) -> None:
    """The webhook is answered before its record exists; the writer adds it just after."""
    settings = records_settings(database_url)
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, UV_ID))
        async with running_app(settings) as client:
            records = client.app.state.records  # type: ignore[attr-defined]
            writer = records._tasks[0]
            writer.cancel()  # no writer: the record can only be queued
            answer = await twilio_webhook(twilio_fields(CALL_SID)).send(client)
            assert answer.status_code == 200 and "<Stream" in answer.text
            assert records._queue.qsize() == 1
            listing = await client.get("/api/calls", headers=AUTH)
            assert listing.json() == {"calls": [], "nextCursor": None}


async def test_records_survive_a_restart_on_the_same_database(database_url: str) -> None:
    settings = records_settings(database_url)
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, UV_ID))
        async with running_app(settings) as client:
            await twilio_webhook(twilio_fields(CALL_SID)).send(client)
        # Shutting down wrote the queue; a new process finds the record.
        async with running_app(settings) as client:
            listing = await client.get("/api/calls", headers=AUTH)
    [record] = listing.json()["calls"]
    assert (record["providerCallId"], record["ultravoxCallId"]) == (CALL_SID, UV_ID)
