"""`/{provider}/status`: each provider's signed status callback updates its call's record
(status, duration, hang-up cause, the end); forged, huge or unknown ones change nothing."""

import json
import time

import httpx
import pytest
import respx

from tests.conftest import (
    API_URL,
    JOIN_URL,
    PROVIDERS,
    ProviderCase,
    created_call,
    plivo_fields,
    plivo_webhook,
    running_app,
    telnyx_fields,
    telnyx_webhook,
    twilio_fields,
    twilio_webhook,
)
from tests.records.conftest import AUTH, flush, records_settings

# Each provider's final status report, in its own field names.
FINAL_STATUS = {
    "twilio": {"CallStatus": "completed", "CallDuration": "42", "SipResponseCode": "200"},
    "telnyx": {"CallStatus": "completed", "CallDuration": "42", "HangupCause": "normal_clearing"},
    "plivo": {
        "CallStatus": "completed",
        "Duration": "42",
        "BillDuration": "60",
        "HangupCauseName": "Normal Hangup",
        "Event": "Hangup",
    },
}
EXPECTED = {
    "twilio": ("completed", "sip 200"),
    "telnyx": ("completed", "normal_clearing"),
    "plivo": ("completed", "Normal Hangup"),
}


async def answered_call(client: httpx.AsyncClient, provider: ProviderCase) -> dict[str, object]:
    response = await provider.webhook(provider.fields(), method="POST").send(client)
    assert response.status_code == 200
    await flush(client)
    [record] = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
    return record


async def only_record(client: httpx.AsyncClient) -> dict[str, object]:
    [record] = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
    return record


async def test_a_signed_final_status_ends_the_record(provider: ProviderCase) -> None:
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, f"uv-{provider.name}"))
        async with running_app(records_settings()) as client:
            await answered_call(client, provider)
            fields = provider.fields() | FINAL_STATUS[provider.name]
            status = provider.webhook(fields, method="POST", path=f"/{provider.name}/status")
            response = await status.send(client)
            assert (response.status_code, response.text) == (204, "")
            record = await only_record(client)
    assert record["state"] == "ended"
    assert record["endedBy"] == "provider"
    assert (record["providerStatus"], record["hangupCause"]) == EXPECTED[provider.name]
    assert record["durationSeconds"] == 42.0
    assert record["outcome"] == "answered"


async def test_a_status_for_an_unknown_call_is_accepted_and_ignored(
    provider: ProviderCase,
) -> None:
    async with running_app(records_settings()) as client:
        fields = provider.fields() | FINAL_STATUS[provider.name]
        response = await provider.webhook(
            fields, method="POST", path=f"/{provider.name}/status"
        ).send(client)
        assert response.status_code == 204
        assert (await client.get("/api/calls", headers=AUTH)).json()["calls"] == []


@pytest.mark.parametrize("case", PROVIDERS, ids=lambda case: case.name)
async def test_a_forged_status_is_refused(case: ProviderCase) -> None:
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-f"))
        async with running_app(records_settings()) as client:
            await answered_call(client, case)
            fields = case.fields() | FINAL_STATUS[case.name]
            webhook = case.webhook(fields, method="POST", path=f"/{case.name}/status")
            webhook.content = webhook.content.replace(b"completed", b"busy")  # after signing
            response = await webhook.send(client)
            assert response.status_code == 403
            record = await only_record(client)
    assert record["state"] == "live"
    assert record["providerStatus"] is None


async def test_a_replayed_status_lands_once() -> None:
    case = PROVIDERS[0]
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-r"))
        async with running_app(records_settings()) as client:
            record = await answered_call(client, case)
            fields = case.fields() | FINAL_STATUS["twilio"] | {"SequenceNumber": "3"}
            webhook = twilio_webhook(fields, path="/twilio/status")
            assert (await webhook.send(client)).status_code == 204
            assert (await webhook.send(client)).status_code == 204
            detail = (await client.get(f"/api/calls/{record['id']}", headers=AUTH)).json()
    kinds = [event["kind"] for event in detail["timeline"]]
    assert kinds == ["webhook.answered", "status.completed"]


async def test_a_stale_telnyx_status_is_refused() -> None:
    async with running_app(records_settings()) as client:
        fields = telnyx_fields() | FINAL_STATUS["telnyx"]
        old = int(time.time()) - 301
        response = await telnyx_webhook(
            fields, method="POST", path="/telnyx/status", timestamp=old
        ).send(client)
    assert response.status_code == 403


@pytest.mark.parametrize("allow_get", [False, True])
async def test_a_telnyx_status_by_get_is_refused_even_when_get_webhooks_are_allowed(
    allow_get: bool,
) -> None:
    # A GET's query is unsigned (Telnyx signs `timestamp|body`): one captured signature could
    # end any call's record. Unlike a GET webhook, a status callback can always be a POST.
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-telnyx"))
        async with running_app(records_settings(telnyx_allow_get=allow_get)) as client:
            await answered_call(client, PROVIDERS[1])
            fields = telnyx_fields() | FINAL_STATUS["telnyx"]
            response = await telnyx_webhook(fields, method="GET", path="/telnyx/status").send(
                client
            )
            record = await only_record(client)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    reason = "even with TELNYX_ALLOW_GET" if allow_get else "Telnyx webhooks by GET are refused"
    assert reason in response.text
    assert record["state"] == "live"


NOT_AN_EVENT = "not a Telnyx call event (data.event_type, payload)"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"data": {"event_type": "call.hangup", "payload": {}}}', NOT_AN_EVENT),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, NOT_AN_EVENT),
        (
            b'{"data": {"event_type": "call.hangup", "payload": {"call_control_id": "x y"}}}',
            "call_control_id is not a Telnyx call control id",
        ),
    ],
    ids=["no_call_id", "nested_too_deep", "odd_call_id"],
)
async def test_a_signed_telnyx_event_that_names_no_call_is_a_bad_request(
    body: bytes, reason: str
) -> None:
    import base64

    from tests.conftest import TELNYX_KEY

    ts = str(int(time.time()))
    signed = base64.b64encode(TELNYX_KEY.sign(ts.encode() + b"|" + body).signature).decode()
    async with running_app(records_settings()) as client:
        response = await client.post(
            "/telnyx/status",
            content=body,
            headers={
                "content-type": "application/json",
                "telnyx-signature-ed25519": signed,
                "telnyx-timestamp": ts,
            },
        )
    assert (response.status_code, response.text) == (400, f"{reason}\n")


async def test_telnyx_call_control_hangup_event_ends_an_outbound_record() -> None:
    # Outbound Telnyx calls are Call Control calls: their events are JSON.
    async with running_app(records_settings()) as client:
        records = client.app.state.records  # type: ignore[attr-defined]
        from app.records.changes import CallChange
        from app.records.models import utcnow

        await records.apply_now(
            CallChange(
                at=utcnow(),
                provider="telnyx",
                provider_call_ids=("v3:outbound-1",),
                create=True,
                direction="outbound",
                outcome="answered",
            )
        )
        event = {
            "data": {
                "event_type": "call.hangup",
                "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
                "occurred_at": "2026-12-02T10:02:00Z",
                "payload": {
                    "call_control_id": "v3:outbound-1",
                    "hangup_cause": "normal_clearing",
                    "start_time": "2026-12-02T10:01:00Z",
                    "end_time": "2026-12-02T10:02:00Z",
                },
            }
        }
        from tests.conftest import TELNYX_KEY

        body = json.dumps(event).encode()
        ts = str(int(time.time()))
        import base64

        signed = base64.b64encode(TELNYX_KEY.sign(ts.encode() + b"|" + body).signature).decode()
        response = await client.post(
            "/telnyx/status",
            content=body,
            headers={
                "content-type": "application/json",
                "telnyx-signature-ed25519": signed,
                "telnyx-timestamp": ts,
            },
        )
        assert response.status_code == 204
        record = await only_record(client)
    assert (record["state"], record["providerStatus"], record["hangupCause"]) == (
        "ended",
        "hangup",
        "normal_clearing",
    )
    assert record["durationSeconds"] == 60.0
    assert record["endedAt"] == "2026-12-02T10:02:00Z"


async def test_plivo_hangup_of_an_outbound_call_finds_it_by_request_uuid() -> None:
    request_uuid = "8e6d1c4a-0000-4000-8000-00000000b001"
    call_uuid = "8e6d1c4a-0000-4000-8000-00000000b002"
    async with running_app(records_settings()) as client:
        from app.records.changes import CallChange
        from app.records.models import utcnow

        records = client.app.state.records  # type: ignore[attr-defined]
        await records.apply_now(
            CallChange(
                at=utcnow(),
                provider="plivo",
                provider_call_ids=(request_uuid,),
                create=True,
                direction="outbound",
                outcome="answered",
            )
        )
        fields = plivo_fields(call_uuid) | FINAL_STATUS["plivo"] | {"RequestUUID": request_uuid}
        response = await plivo_webhook(fields, path="/plivo/status").send(client)
        assert response.status_code == 204
        record = await only_record(client)
    assert (record["state"], record["durationSeconds"]) == ("ended", 42.0)


@pytest.mark.parametrize(("path", "status"), [("/nobody/status", 404), ("/vonage/status", 503)])
async def test_unknown_or_unconfigured_providers_are_refused(path: str, status: int) -> None:
    async with running_app(records_settings()) as client:
        response = await client.post(path, content=b"x=1")
    assert response.status_code == status


async def test_a_huge_status_is_refused() -> None:
    async with running_app(records_settings()) as client:
        fields = twilio_fields() | {"Padding": "x" * 70_000}
        response = await twilio_webhook(fields, path="/twilio/status").send(client)
    assert response.status_code == 413


async def test_a_signed_status_without_its_fields_is_a_bad_request() -> None:
    async with running_app(records_settings()) as client:
        fields = {"CallSid": "CA0123456789abcdef0123456789abcdef"}
        response = await twilio_webhook(fields, path="/twilio/status").send(client)
    assert (response.status_code, response.text) == (400, "missing field(s): CallStatus\n")


async def test_ten_thousand_unsigned_status_callbacks_are_refused() -> None:
    async with running_app(records_settings()) as client:
        for _ in range(10_000):
            response = await client.post(
                "/twilio/status",
                content=b"CallSid=CA0123456789abcdef0123456789abcdef&CallStatus=completed",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 403
        assert (await client.get("/api/calls", headers=AUTH)).json()["calls"] == []
