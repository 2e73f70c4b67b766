"""Outbound calls end to end, per provider: `POST /calls` in, the exact Ultravox request and the
exact provider request out (Telnyx and Ultravox mocked with respx, the requests-based Twilio and
Plivo SDKs with `responses`), the answer back."""

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import responses
import respx

from tests.conftest import (
    AGENT_ID,
    API_URL,
    BASE_URL,
    JOIN_URL,
    PLIVO_TOKEN,
    TWILIO_TOKEN,
    plivo_fields,
    plivo_webhook,
    running_app,
    twilio_fields,
    twilio_webhook,
)
from tests.outbound_mocks import (
    API_TOKEN,
    AUTH,
    CALLEE,
    OTHER_API_TOKEN,
    OUR_NUMBER,
    PLIVO_AUTH_ID,
    PLIVO_CALLS_URL,
    PLIVO_HANGUP_XML,
    PLIVO_REQUEST_UUID,
    PLIVO_STREAM_XML,
    STREAM_TWIML,
    TELNYX_API_KEY,
    TELNYX_CALL_CONTROL_ID,
    TELNYX_CALLS_URL,
    TELNYX_CONNECTION_ID,
    TWILIO_CALL_SID,
    TWILIO_CALLS_URL,
    TWILIO_SID,
    UV_CALL_ID,
    basic_auth,
    expected_ultravox_body,
    outbound_settings,
    plivo_accepts,
    telnyx_accepts,
    twilio_accepts,
    ultravox_created,
    ultravox_deleted,
)


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    """Ultravox and Telnyx, mocked at the HTTP level; any other httpx request fails the test."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def requests_apis() -> Iterator[responses.RequestsMock]:
    """Twilio and Plivo (requests-based SDKs), mocked at the HTTP level."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- each provider: the exact requests out, the answer back ------------------------------------


async def test_twilio_call_is_placed_with_inline_twiml(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    created = ultravox_created(apis)
    twilio_accepts(requests_apis)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )

    assert response.status_code == 201
    assert response.json() == {
        "ultravoxCallId": UV_CALL_ID,
        "providerCallId": TWILIO_CALL_SID,
        "state": "dialing",
        "provider": "twilio",
        "to": CALLEE,
        "from": OUR_NUMBER,
    }
    assert json.loads(created.calls.last.request.content) == expected_ultravox_body("twilio")
    [sent] = requests_apis.calls
    assert sent.request.headers["Authorization"] == basic_auth(TWILIO_SID, TWILIO_TOKEN)
    assert parse_qs(str(sent.request.body)) == {
        "To": [CALLEE],
        "From": [OUR_NUMBER],
        "Twiml": [STREAM_TWIML],
        "Timeout": ["45"],
        "StatusCallback": [f"{BASE_URL}/twilio/status"],
    }


async def test_telnyx_call_is_dialled_with_bidirectional_rtp_stream(
    apis: respx.MockRouter,
) -> None:
    created = ultravox_created(apis)
    dial = telnyx_accepts(apis)
    settings = outbound_settings(telnyx_stream_codec="PCMU", telnyx_stream_sampling_rate=8000)
    async with running_app(settings) as client:
        response = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )

    assert response.status_code == 201
    assert response.json()["providerCallId"] == TELNYX_CALL_CONTROL_ID
    assert json.loads(created.calls.last.request.content) == expected_ultravox_body("telnyx")
    sent = dial.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {TELNYX_API_KEY}"
    assert json.loads(sent.content) == {
        "connection_id": TELNYX_CONNECTION_ID,
        "from": OUR_NUMBER,
        "to": CALLEE,
        "timeout_secs": 45,
        "stream_url": JOIN_URL,
        "stream_track": "inbound_track",
        "stream_bidirectional_mode": "rtp",
        "stream_codec": "PCMU",
        "stream_bidirectional_codec": "PCMU",
        "stream_bidirectional_sampling_rate": 8000,
        "stream_bidirectional_target_legs": "opposite",
        "webhook_url": f"{BASE_URL}/telnyx/status",
    }


async def test_plivo_call_answer_url_streams_once_when_signed(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    created = ultravox_created(apis)
    plivo_accepts(requests_apis)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "plivo", "to": CALLEE}, headers=AUTH
        )
        assert response.status_code == 201
        assert response.json()["providerCallId"] == PLIVO_REQUEST_UUID
        assert json.loads(created.calls.last.request.content) == expected_ultravox_body("plivo")

        [sent] = requests_apis.calls
        assert sent.request.headers["Authorization"] == basic_auth(PLIVO_AUTH_ID, PLIVO_TOKEN)
        plivo_request = json.loads(sent.request.body)
        answer_url = plivo_request.pop("answer_url")
        assert answer_url.startswith(f"{BASE_URL}/plivo/outbound/")
        reference = answer_url.rsplit("/", 1)[1]
        assert len(reference) >= 32
        assert plivo_request == {
            "from": OUR_NUMBER.lstrip("+"),
            "to": CALLEE.lstrip("+"),
            "answer_method": "POST",
            "ring_method": "POST",
            "hangup_method": "POST",
            "fallback_method": "POST",
            "machine_detection_time": 5000,
            "machine_detection_method": "POST",
            "ring_timeout": 45,
            "error_if_parent_not_found": False,
            "hangup_url": f"{BASE_URL}/plivo/status",
        }

        # Plivo requests the answer URL, signed, when the callee picks up.
        answered = plivo_fields(PLIVO_REQUEST_UUID) | {"Direction": "outbound"}
        path = answer_url.removeprefix(BASE_URL)
        first = await plivo_webhook(answered, path=path).send(client)
        again = await plivo_webhook(answered, path=path).send(client)

    assert first.status_code == 200
    assert first.text == PLIVO_STREAM_XML
    # Single use: a repeat (or a replay) hangs up instead of streaming to the call again.
    assert again.status_code == 200
    assert again.text == PLIVO_HANGUP_XML


async def test_plivo_answer_url_with_bad_signature_is_refused_and_keeps_the_call(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    plivo_accepts(requests_apis)
    async with running_app(outbound_settings()) as client:
        await client.post("/calls", json={"provider": "plivo", "to": CALLEE}, headers=AUTH)
        answer_url = json.loads(requests_apis.calls[0].request.body)["answer_url"]
        path = answer_url.removeprefix(BASE_URL)
        answered = plivo_fields(PLIVO_REQUEST_UUID)
        forged = await plivo_webhook(answered, path=path, token="not-the-token").send(client)
        genuine = await plivo_webhook(answered, path=path).send(client)

    assert forged.status_code == 403
    assert genuine.text == PLIVO_STREAM_XML


async def test_unknown_answer_reference_hangs_up(apis: respx.MockRouter) -> None:
    async with running_app(outbound_settings()) as client:
        response = await plivo_webhook(plivo_fields(), path="/plivo/outbound/guess").send(client)
    assert response.status_code == 200
    assert response.text == PLIVO_HANGUP_XML


async def test_agent_override_with_template_context_and_metadata(
    apis: respx.MockRouter,
) -> None:
    created = ultravox_created(apis, f"/agents/{AGENT_ID}/calls")
    telnyx_accepts(apis)
    settings = outbound_settings(ultravox_call_options='{"maxDuration": "600s"}')
    request = {
        "provider": "telnyx",
        "to": "+1 (500) 555-0006",
        "from": "+15005550002",
        "agentId": AGENT_ID,
        "templateContext": {"customerName": "Ada", "appointment": "Tuesday 10:00"},
        "metadata": {"campaign": "reminders", "provider": "spoofed"},
    }
    async with running_app(settings) as client:
        response = await client.post("/calls", json=request, headers=AUTH)

    assert response.status_code == 201
    assert response.json()["from"] == "+15005550002"
    assert json.loads(created.calls.last.request.content) == {
        "firstSpeakerSettings": {"user": {}},
        "maxDuration": "600s",
        "metadata": {
            "campaign": "reminders",
            "provider": "telnyx",
            "callerNumber": CALLEE,
            "calledNumber": "+15005550002",
            "direction": "outbound",
        },
        "medium": {"telnyx": {}},
        "templateContext": {
            "customerName": "Ada",
            "appointment": "Tuesday 10:00",
            "callerNumber": CALLEE,
            "calledNumber": "+15005550002",
            "provider": "telnyx",
        },
        "joinTimeout": "60s",
    }


async def test_join_timeout_comes_from_settings(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    created = ultravox_created(apis)
    twilio_accepts(requests_apis)
    settings = outbound_settings(outbound_join_timeout="95s", outbound_ring_timeout_seconds=80)
    async with running_app(settings) as client:
        await client.post("/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH)
    assert json.loads(created.calls.last.request.content)["joinTimeout"] == "95s"
    assert parse_qs(str(requests_apis.calls[0].request.body))["Timeout"] == ["80"]


# --- authentication ----------------------------------------------------------------------------


async def test_without_configured_tokens_the_endpoint_is_disabled(apis: respx.MockRouter) -> None:
    async with running_app(outbound_settings(bridge_api_tokens="")) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 404
    assert "set BRIDGE_API_TOKENS" in response.json()["detail"]
    assert not apis.calls


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": f"Bearer {API_TOKEN}x"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "not-bearer", "longer", "empty"],
)
async def test_missing_or_wrong_token_is_unauthorized(
    apis: respx.MockRouter, headers: dict[str, str]
) -> None:
    async with running_app(outbound_settings()) as client:
        # A malformed body too: the token is checked first, so it is not even read.
        response = await client.post("/calls", content=b"{not json", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="ultravox-bridge"'
    assert not apis.calls


async def test_every_configured_token_is_accepted(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    twilio_accepts(requests_apis)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls",
            json={"provider": "twilio", "to": CALLEE},
            headers={"Authorization": f"bearer {OTHER_API_TOKEN}"},
        )
    assert response.status_code == 201


# --- bad requests cost nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", None),
        (json.dumps({"provider": "twilio"}).encode(), "to"),
        (json.dumps({"provider": "twilio", "to": "12"}).encode(), "to"),
        (json.dumps({"provider": "twilio", "to": "sip:bob@example.com"}).encode(), "to"),
        (json.dumps({"provider": "twilio", "to": CALLEE, "from": "anonymous"}).encode(), "from"),
        (json.dumps({"provider": "twilio", "to": CALLEE, "colour": "red"}).encode(), "colour"),
        (json.dumps({"provider": "twilio", "to": CALLEE, "metadata": {"n": 1}}).encode(), None),
        (
            json.dumps(
                {"provider": "twilio", "to": CALLEE, "metadata": {"ultravox.x": "1"}}
            ).encode(),
            "metadata",
        ),
        (
            json.dumps(
                {"provider": "twilio", "to": CALLEE, "route": "default", "agentId": AGENT_ID}
            ).encode(),
            None,
        ),
        (
            json.dumps({"provider": "twilio", "to": CALLEE, "agentId": "../calls?x="}).encode(),
            "agentId",
        ),
    ],
    ids=[
        "not-json",
        "no-to",
        "short-number",
        "sip-uri",
        "bad-from",
        "unknown-field",
        "metadata-not-string",
        "reserved-metadata",
        "route-and-agent",
        "agent-id-not-an-id",
    ],
)
async def test_malformed_request_is_unprocessable(
    apis: respx.MockRouter, body: bytes, field: str | None
) -> None:
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", content=body, headers=AUTH | {"content-type": "application/json"}
        )
    assert response.status_code == 422
    if field is not None:
        assert field in [str(part) for error in response.json()["detail"] for part in error["loc"]]
    assert not apis.calls


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ({"provider": "vonage", "to": CALLEE}, 422, "unknown provider 'vonage'"),
        ({"provider": "twilio", "to": CALLEE, "route": "sales"}, 422, "no route named 'sales'"),
        (
            {"provider": "twilio", "to": CALLEE, "templateContext": {"a": 1}},
            422,
            "templateContext needs an agent",
        ),
    ],
)
async def test_request_naming_what_does_not_exist_is_refused(
    apis: respx.MockRouter, request_body: dict[str, Any], status: int, message: str
) -> None:
    async with running_app(outbound_settings()) as client:
        response = await client.post("/calls", json=request_body, headers=AUTH)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert not apis.calls


async def test_provider_without_credentials_names_the_missing_settings(
    apis: respx.MockRouter,
) -> None:
    settings = outbound_settings(telnyx_api_key="", public_base_url="")
    async with running_app(settings) as client:
        telnyx = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )
        plivo = await client.post("/calls", json={"provider": "plivo", "to": CALLEE}, headers=AUTH)
    assert telnyx.status_code == 503
    assert telnyx.json() == {
        "detail": "telnyx outbound calls need TELNYX_API_KEY: set the missing settings and restart "
        "the service"
    }
    assert plivo.status_code == 503
    assert "PUBLIC_BASE_URL" in plivo.json()["detail"]
    assert not apis.calls


async def test_missing_caller_number_names_the_setting(apis: respx.MockRouter) -> None:
    async with running_app(outbound_settings(twilio_from_number="")) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 422
    assert response.json()["detail"] == "give 'from', or set TWILIO_FROM_NUMBER as the default"
    assert not apis.calls


# --- failures ----------------------------------------------------------------------------------


async def test_twilio_refusal_is_502_and_ends_the_ultravox_call(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    requests_apis.add(
        responses.POST,
        TWILIO_CALLS_URL,
        json={
            "code": 21211,
            "message": "The 'To' number +15005550006 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        },
        status=400,
    )
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )

    assert response.status_code == 502
    assert response.json() == {
        "detail": "twilio refused the call: Unable to create record: The 'To' number "
        "+15005550006 is not a valid phone number. (Twilio error 21211)",
        "ultravoxCallId": UV_CALL_ID,
        "ultravoxCallEnded": True,
        "providerStatus": 400,
    }
    assert deleted.call_count == 1
    assert deleted.calls.last.request.headers["x-api-key"] == "test-ultravox-key-0123456789"


async def test_telnyx_refusal_is_502_and_ends_the_ultravox_call(apis: respx.MockRouter) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    apis.post(TELNYX_CALLS_URL).respond(
        422,
        json={
            "errors": [
                {
                    "code": "10015",
                    "title": "Bad Request",
                    "detail": "The destination number is invalid.",
                }
            ]
        },
    )
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 502
    assert response.json()["detail"] == (
        "telnyx refused the call: The destination number is invalid."
    )
    assert response.json()["ultravoxCallEnded"] is True
    assert deleted.call_count == 1


async def test_plivo_refusal_is_502_ends_the_call_and_spends_the_reference(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    requests_apis.add(
        responses.POST,
        PLIVO_CALLS_URL,
        json={"api_id": "c8b3b4a2-0000-0000-0000-000000000001", "error": "insufficient credit"},
        status=400,
    )
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "plivo", "to": CALLEE}, headers=AUTH
        )
        answer_url = json.loads(requests_apis.calls[0].request.body)["answer_url"]
        late = await plivo_webhook(plivo_fields(), path=answer_url.removeprefix(BASE_URL)).send(
            client
        )

    assert response.status_code == 502
    assert response.json()["detail"] == "plivo refused the call: insufficient credit"
    assert deleted.call_count == 1
    assert late.text == PLIVO_HANGUP_XML


async def test_failed_ultravox_end_is_reported(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    apis.delete(f"{API_URL}/calls/{UV_CALL_ID}").respond(500, json={"detail": "oops"})
    requests_apis.add(
        responses.POST,
        TWILIO_CALLS_URL,
        json={"code": 20003, "message": "Authenticate"},
        status=401,
    )
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 502
    assert response.json()["ultravoxCallEnded"] is False


async def test_unreachable_provider_is_504_and_keeps_the_ultravox_call(
    apis: respx.MockRouter,
) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    apis.post(TELNYX_CALLS_URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 504
    assert response.json()["ultravoxCallId"] == UV_CALL_ID
    assert "ends after 60s if nobody joins" in response.json()["detail"]
    assert deleted.call_count == 0


async def test_ultravox_failure_is_reported_and_nothing_is_dialled(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    apis.post(f"{API_URL}/calls").respond(401, json={"detail": "Invalid API key"})
    twilio_accepts(requests_apis)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 502
    assert response.json()["ultravoxStatus"] == 401
    assert response.json()["detail"].startswith("Ultravox did not create the call: ")
    assert not requests_apis.calls


# --- inbound calls are never held up by an outbound request ------------------------------------


async def test_inbound_webhook_is_answered_while_a_plivo_dial_blocks(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    entered = threading.Event()
    release = threading.Event()

    def slow_plivo(request: Any) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(timeout=5)
        body = {"api_id": "a", "message": "call fired", "request_uuid": PLIVO_REQUEST_UUID}
        return 201, {}, json.dumps(body)

    requests_apis.add_callback(responses.POST, PLIVO_CALLS_URL, callback=slow_plivo)
    async with running_app(outbound_settings()) as client:
        outbound = asyncio.create_task(
            client.post("/calls", json={"provider": "plivo", "to": CALLEE}, headers=AUTH)
        )
        try:
            assert await asyncio.to_thread(entered.wait, 5)
            inbound = await twilio_webhook(twilio_fields()).send(client)
            # The inbound call was answered while Plivo's SDK was still blocked in its request.
            assert inbound.status_code == 200
            assert inbound.text == STREAM_TWIML
            assert not outbound.done()
        finally:
            release.set()
        placed = await outbound
    assert placed.status_code == 201


async def test_ultravox_at_capacity_is_503_with_retry_after(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    apis.post(f"{API_URL}/calls").respond(
        429, json={"detail": "Too many concurrent calls"}, headers={"Retry-After": "30"}
    )
    twilio_accepts(requests_apis)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "30"
    assert response.json()["retryAfter"] == 30.0
    assert not requests_apis.calls


async def test_plivo_call_the_store_cannot_keep_is_503_and_ends_the_ultravox_call(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.store import StoreError

    async def store_down(*args: object) -> None:
        raise StoreError("Redis put failed")

    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    async with running_app(outbound_settings()) as client:
        monkeypatch.setattr(client.app.state.store, "put", store_down)  # type: ignore[attr-defined]
        response = await client.post(
            "/calls", json={"provider": "plivo", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 503
    assert response.json() == {
        "detail": "the shared store cannot keep the call for plivo: Redis put failed",
        "ultravoxCallId": UV_CALL_ID,
        "ultravoxCallEnded": True,
    }
    assert deleted.call_count == 1
    assert len(requests_apis.calls) == 0  # Plivo was never asked to dial


async def test_twilio_that_cannot_be_reached_is_502_and_ends_the_ultravox_call(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    # What requests raises when the provider's name does not resolve: nothing was sent.
    from requests.exceptions import ConnectionError
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    unresolved = NameResolutionError("api.twilio.com", None, "Name or service not known")  # type: ignore[arg-type]
    requests_apis.add(
        responses.POST,
        TWILIO_CALLS_URL,
        body=ConnectionError(MaxRetryError(None, TWILIO_CALLS_URL, unresolved)),  # type: ignore[arg-type]
    )
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 502
    assert response.json()["detail"].startswith("twilio could not be reached: cannot reach Twilio")
    assert response.json()["ultravoxCallEnded"] is True
    assert deleted.call_count == 1


async def test_telnyx_that_cannot_be_reached_is_502_and_ends_the_ultravox_call(
    apis: respx.MockRouter,
) -> None:
    ultravox_created(apis)
    deleted = ultravox_deleted(apis)
    apis.post(TELNYX_CALLS_URL).mock(side_effect=httpx.ConnectError("refused"))
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 502
    assert response.json()["detail"].startswith("telnyx could not be reached: cannot reach Telnyx")
    assert deleted.call_count == 1


# --- records and limits --------------------------------------------------------------------------


async def test_placed_and_refused_calls_are_recorded_and_the_limit_holds(
    apis: respx.MockRouter, requests_apis: responses.RequestsMock
) -> None:
    ultravox_created(apis)
    twilio_accepts(requests_apis)
    async with running_app(outbound_settings(max_concurrent_calls=1)) as client:
        placed = await client.post(
            "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
        )
        over = await client.post("/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH)
        await client.app.state.records._queue.join()  # type: ignore[attr-defined]
        listing = await client.get("/api/calls", headers=AUTH)
    assert placed.status_code == 201
    assert over.status_code == 503
    assert over.json()["detail"].startswith("too many live calls")
    assert len(requests_apis.calls) == 1  # nothing dialled for the refused call
    refused, answered = listing.json()["calls"]
    assert (answered["direction"], answered["outcome"], answered["state"]) == (
        "outbound",
        "answered",
        "live",
    )
    assert (answered["providerCallId"], answered["ultravoxCallId"]) == (TWILIO_CALL_SID, UV_CALL_ID)
    assert (answered["caller"], answered["called"]) == ("+15*******01", "+15*******06")
    assert (refused["outcome"], refused["state"], refused["ultravoxCallId"]) == (
        "refused-over-limit",
        "ended",
        None,
    )
