"""Exotel outbound calls: Calls/connect with Basic auth runs the flow whose Voicebot applet then
fetches the call's pending join URL, once, by the reference in CustomField; and the placed
call's StatusCallback, JSON or multipart form."""

import base64
import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from tests.conftest import BASE_URL, JOIN_URL, running_app
from tests.outbound_mocks import (
    AUTH,
    UV_CALL_ID,
    expected_ultravox_body,
    outbound_settings,
    ultravox_created,
    ultravox_deleted,
)
from tests.providers.exotel_helpers import EXOTEL_TOKEN, exotel_request

ACCOUNT_SID = "exampleaccount1"
API_KEY = "exotel-api-key-0001"
API_TOKEN = "exotel-api-token-0001"
APP_ID = "654321"
CONNECT_URL = f"https://api.in.exotel.com/v1/Accounts/{ACCOUNT_SID}/Calls/connect.json"
EXOPHONE = "+911500555001"
CALLEE = "+911500555006"
EXOTEL_SID = "c5f1e2d3a4b5c6d7e8f90a1b2c3d4e5f"


def settings(**overrides: object) -> object:
    values: dict[str, object] = {
        "exotel_url_tokens": EXOTEL_TOKEN,
        "exotel_account_sid": ACCOUNT_SID,
        "exotel_api_key": API_KEY,
        "exotel_api_token": API_TOKEN,
        "exotel_subdomain": "api.in.exotel.com",
        "exotel_app_id": APP_ID,
        "exotel_from_number": EXOPHONE,
    }
    values.update(overrides)
    return outbound_settings(**values)


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def voicebot_fetch(reference: str, token: str = EXOTEL_TOKEN) -> object:
    """The outbound flow's Voicebot applet asking for the stream, CustomField passed on."""
    fields = {
        "CallSid": EXOTEL_SID,
        "CallFrom": "01500555006",
        "CallTo": "01500555001",
        "Direction": "outbound-api",
        "CustomField": reference,
    }
    return exotel_request(fields, token=token, path="/exotel/outbound")


async def test_call_is_connected_to_the_flow_and_its_voicebot_fetches_the_join_url_once(
    apis: respx.MockRouter,
) -> None:
    created = ultravox_created(apis)
    connect = apis.post(CONNECT_URL).respond(
        200, json={"Call": {"Sid": EXOTEL_SID, "Status": "in-progress"}}
    )
    async with running_app(settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "exotel", "to": CALLEE}, headers=AUTH
        )
        assert response.status_code == 201
        assert response.json()["providerCallId"] == EXOTEL_SID
        body = expected_ultravox_body("exotel")
        body["metadata"] |= {"callerNumber": CALLEE, "calledNumber": EXOPHONE}
        assert json.loads(created.calls.last.request.content) == body

        sent = connect.calls.last.request
        credentials = base64.b64encode(f"{API_KEY}:{API_TOKEN}".encode()).decode()
        assert sent.headers["authorization"] == f"Basic {credentials}"
        form = {name: values[0] for name, values in parse_qs(sent.content.decode()).items()}
        reference = form.pop("CustomField")
        assert len(reference) >= 32
        assert form == {
            "From": "01500555006",
            "CallerId": "01500555001",
            "Url": f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/{APP_ID}",
            "CallType": "trans",
            "TimeOut": "45",
            "StatusCallback": f"{BASE_URL}/exotel/events/{EXOTEL_TOKEN}",
        }

        stranger = await voicebot_fetch(reference, token="wrong").send(client)
        guessed = await voicebot_fetch("x" * 32).send(client)
        first = await voicebot_fetch(reference).send(client)
        again = await voicebot_fetch(reference).send(client)

    # A stranger without the token is refused and does not spend the reference.
    assert stranger.status_code == 403
    assert guessed.status_code == 404
    assert (first.status_code, first.json()) == (200, {"url": JOIN_URL})
    assert again.status_code == 404
    assert again.json()["outcome"] == "rejected"
    assert created.call_count == 1


async def test_exotel_refusal_is_502_and_ends_the_ultravox_call(apis: respx.MockRouter) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    apis.post(CONNECT_URL).respond(
        401, json={"RestException": {"Status": 401, "Message": "Authentication is required"}}
    )
    async with running_app(settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "exotel", "to": CALLEE}, headers=AUTH
        )

    assert response.status_code == 502
    assert response.json()["detail"] == "exotel refused the call: Authentication is required"
    assert response.json()["ultravoxCallEnded"] is True
    assert deleted.call_count == 1


async def test_unreachable_exotel_is_502_and_an_answer_lost_is_504(apis: respx.MockRouter) -> None:
    ultravox_created(apis)
    ultravox_deleted(apis)
    apis.post(CONNECT_URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]
    )
    async with running_app(settings()) as client:
        unreachable = await client.post(
            "/calls", json={"provider": "exotel", "to": CALLEE}, headers=AUTH
        )
        lost = await client.post("/calls", json={"provider": "exotel", "to": CALLEE}, headers=AUTH)

    assert unreachable.status_code == 502
    assert lost.status_code == 504
    assert lost.json()["ultravoxCallId"] == UV_CALL_ID


async def test_missing_exotel_settings_are_named(apis: respx.MockRouter) -> None:
    created = ultravox_created(apis)
    async with running_app(settings(exotel_api_token=None, exotel_app_id=None)) as client:
        response = await client.post(
            "/calls", json={"provider": "exotel", "to": CALLEE}, headers=AUTH
        )

    assert response.status_code == 503
    assert response.json()["detail"] == (
        "exotel outbound calls need EXOTEL_API_TOKEN, EXOTEL_APP_ID: set the missing settings "
        "and restart the service"
    )
    assert created.call_count == 0


# --- StatusCallback ------------------------------------------------------------------------------


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "exotelboundary42"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


STATUS = {
    "CallSid": EXOTEL_SID,
    "Status": "completed",
    "EventType": "terminal",
    "Direction": "outbound-api",
    "ConversationDuration": "42",
    "DateUpdated": "2026-11-30 10:05:00",
    "RecordingUrl": "",
}
LOGGED = {
    "provider": "exotel",
    "call_id": EXOTEL_SID,
    "status": "completed",
    "event_type": "terminal",
    "direction": "outbound-api",
    "duration_seconds": "42",
    "timestamp": "2026-11-30 10:05:00",
}


@pytest.mark.parametrize("encoding", ["json", "multipart", "form"])
async def test_status_callback_is_read_as_json_or_form_and_logged(
    encoding: str, apis: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.media")
    if encoding == "multipart":
        body, content_type = multipart(STATUS)
    elif encoding == "json":
        body, content_type = (
            json.dumps(STATUS | {"Legs": [{"Status": "completed"}]}).encode(),
            ("application/json"),
        )
    else:
        body = "&".join(f"{k}={v}" for k, v in STATUS.items()).replace(" ", "+").encode()
        content_type = "application/x-www-form-urlencoded"
    async with running_app(settings()) as client:
        response = await client.post(
            f"/exotel/events/{EXOTEL_TOKEN}", content=body, headers={"content-type": content_type}
        )

    assert response.status_code == 204
    [record] = [r for r in caplog.records if r.getMessage() == "call.event"]
    assert record.fields == LOGGED  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"/exotel/events/{'x' * 43}", STATUS, 403),
        ("/exotel/events", STATUS, 403),
        (f"/exotel/events/{EXOTEL_TOKEN}", {"CallSid": EXOTEL_SID}, 400),
        (f"/exotel/events/{EXOTEL_TOKEN}", STATUS | {"Status": "exploded"}, 400),
        (f"/twilio/events/{EXOTEL_TOKEN}", STATUS, 404),
    ],
)
async def test_status_callback_without_token_or_status_is_refused(
    path: str, body: dict[str, str], status: int, apis: respx.MockRouter
) -> None:
    async with running_app(settings()) as client:
        response = await client.post(path, json=body)
    assert response.status_code == status
