"""Outbound-call test data and the provider and Ultravox APIs' canned answers, shared by the
API and CLI tests."""

import base64
from typing import Any

import responses
import respx

from app.config import Settings
from app.settings import DEFAULT_SYSTEM_PROMPT
from tests.conftest import API_URL, BASE_URL, JOIN_URL, make_settings

API_TOKEN = "outbound-token-0123456789"
OTHER_API_TOKEN = "rotated-token-9876543210"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
TELNYX_API_KEY = "KEY0123456789ABCDEF_test"
TELNYX_CONNECTION_ID = "1494404757140276705"
PLIVO_AUTH_ID = "MA0123456789ABCDEFGH"
OUR_NUMBER = "+15005550001"
CALLEE = "+15005550006"
UV_CALL_ID = "9a1b2c3d-0000-4000-8000-00000000b001"

TWILIO_CALLS_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Calls.json"
TELNYX_CALLS_URL = "https://api.telnyx.com/v2/calls"
PLIVO_CALLS_URL = f"https://api.plivo.com/v1/Account/{PLIVO_AUTH_ID}/Call/"
TWILIO_CALL_SID = "CAfedcba9876543210fedcba9876543210"
TELNYX_CALL_CONTROL_ID = "v3:telnyx-outbound-0001"
PLIVO_REQUEST_UUID = "9834029e-58b6-11e1-8f8d-000000000001"

ESCAPED_JOIN_URL = JOIN_URL.replace("&", "&amp;")
STREAM_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    f'<Stream url="{ESCAPED_JOIN_URL}" /></Connect></Response>'
)
PLIVO_STREAM_XML = (
    '<Response><Stream bidirectional="true" contentType="audio/x-l16;rate=16000" '
    f'keepCallAlive="true">{ESCAPED_JOIN_URL}</Stream></Response>'
)
PLIVO_HANGUP_XML = '<Response><Hangup reason="rejected"/></Response>'
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def outbound_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bridge_api_tokens": f"{API_TOKEN},{OTHER_API_TOKEN}",
        "public_base_url": BASE_URL,
        "twilio_account_sid": TWILIO_SID,
        "twilio_from_number": OUR_NUMBER,
        "telnyx_api_key": TELNYX_API_KEY,
        "telnyx_connection_id": TELNYX_CONNECTION_ID,
        "telnyx_from_number": OUR_NUMBER,
        "plivo_auth_id": PLIVO_AUTH_ID,
        "plivo_from_number": OUR_NUMBER,
    }
    values.update(overrides)
    return make_settings(**values)


def ultravox_created(apis: respx.MockRouter, path: str = "/calls") -> respx.Route:
    return apis.post(API_URL + path).respond(
        201, json={"callId": UV_CALL_ID, "joinUrl": JOIN_URL, "created": "2026-11-25T10:00:00Z"}
    )


def ultravox_deleted(apis: respx.MockRouter) -> respx.Route:
    return apis.delete(f"{API_URL}/calls/{UV_CALL_ID}").respond(204)


def twilio_accepts(mock: responses.RequestsMock) -> None:
    mock.add(
        responses.POST,
        TWILIO_CALLS_URL,
        json={"sid": TWILIO_CALL_SID, "status": "queued", "to": CALLEE, "from": OUR_NUMBER},
        status=201,
    )


def plivo_accepts(mock: responses.RequestsMock) -> None:
    mock.add(
        responses.POST,
        PLIVO_CALLS_URL,
        json={
            "api_id": "97ceeb52-58b6-11e1-86da-000000000001",
            "message": "call fired",
            "request_uuid": PLIVO_REQUEST_UUID,
        },
        status=201,
    )


def telnyx_accepts(apis: respx.MockRouter) -> respx.Route:
    return apis.post(TELNYX_CALLS_URL).respond(
        200,
        json={
            "data": {
                "call_control_id": TELNYX_CALL_CONTROL_ID,
                "call_leg_id": "2dc6fc34-f9e0-11ea-b68e-000000000001",
                "call_session_id": "2dc1b3c8-f9e0-11ea-bc5a-000000000001",
                "is_alive": False,
                "record_type": "call",
            }
        },
    )


def expected_ultravox_body(provider: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "firstSpeakerSettings": {"user": {}},
        "systemPrompt": DEFAULT_SYSTEM_PROMPT,
        "metadata": {
            "provider": provider,
            "callerNumber": CALLEE,
            "calledNumber": OUR_NUMBER,
            "direction": "outbound",
        },
        "medium": {provider: {}},
        "joinTimeout": "60s",
    }
    body.update(extra)
    return body


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
