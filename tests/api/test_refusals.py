"""Webhooks the service refuses: each gets the right status and never reaches Ultravox."""

import time
from urllib.parse import urlencode

import pytest
import respx
from nacl.signing import SigningKey
from starlette.types import Message

from app.api.webhooks import MAX_BODY_BYTES, receive_body
from tests.conftest import (
    BASE_URL,
    ProviderCase,
    Webhook,
    make_settings,
    plivo_fields,
    plivo_webhook,
    running_app,
    telnyx_fields,
    telnyx_webhook,
    twilio_fields,
    twilio_webhook,
)


@pytest.fixture
def no_ultravox(ultravox: respx.MockRouter) -> respx.MockRouter:
    """Ultravox's API where any call creation would be recorded (and must not happen)."""
    ultravox.post(path__regex=r".*").respond(201, json={"callId": "c", "joinUrl": "wss://u/j"})
    return ultravox


def without(headers: dict[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if not k.lower().startswith(prefix)}


async def test_webhook_whose_body_was_changed_after_signing_is_refused(
    provider: ProviderCase, no_ultravox: respx.MockRouter
) -> None:
    signed = provider.webhook(provider.fields(), method="POST")
    changed = provider.webhook({**provider.fields(), "To": "+15005550009"}, method="POST")
    tampered = Webhook("POST", changed.url, signed.headers, changed.content)
    async with running_app(make_settings()) as client:
        response = await tampered.send(client)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert "does not match" in response.text
    assert no_ultravox.calls.call_count == 0


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_webhook_signed_with_another_secret_is_refused(
    provider: ProviderCase, method: str, no_ultravox: respx.MockRouter
) -> None:
    other_secret = {
        "twilio": {"token": "someone-elses-token"},
        "telnyx": {"key": SigningKey(b"\x09" * 32)},
        "plivo": {"token": "someone-elses-token"},
    }[provider.name]
    webhook = provider.webhook(provider.fields(), method=method, **other_secret)
    async with running_app(make_settings(telnyx_allow_get=True)) as client:
        response = await webhook.send(client)
    assert response.status_code == 403
    assert "does not match" in response.text
    assert no_ultravox.calls.call_count == 0


@pytest.mark.parametrize(
    ("case", "prefix"),
    [("twilio", "x-twilio"), ("telnyx", "telnyx-"), ("plivo", "x-plivo")],
)
async def test_webhook_without_signature_is_refused(
    case: str, prefix: str, no_ultravox: respx.MockRouter
) -> None:
    builders = {
        "twilio": lambda: twilio_webhook(twilio_fields()),
        "telnyx": lambda: telnyx_webhook(telnyx_fields()),
        "plivo": lambda: plivo_webhook(plivo_fields()),
    }
    webhook = builders[case]()
    webhook.headers = without(webhook.headers, prefix)
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 403
    assert response.text.startswith("missing ")
    assert no_ultravox.calls.call_count == 0


async def test_telnyx_webhook_signed_ten_minutes_ago_is_refused(
    no_ultravox: respx.MockRouter,
) -> None:
    webhook = telnyx_webhook(telnyx_fields(), timestamp=int(time.time()) - 600)
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 403
    assert response.text == "Telnyx timestamp is too old or in the future\n"
    assert no_ultravox.calls.call_count == 0


async def test_twilio_signature_for_the_public_url_needs_public_base_url(
    no_ultravox: respx.MockRouter,
) -> None:
    # Twilio signed https://bridge.example.com/...; behind the proxy the app sees http://bridge.test.
    public = "https://bridge.example.com"
    webhook = twilio_webhook(twilio_fields(), signed_base=public)
    async with running_app(make_settings()) as client:
        refused = await webhook.send(client)
    async with running_app(make_settings(public_base_url=public)) as client:
        accepted = await webhook.send(client)
    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert "<Stream" in accepted.text
    assert no_ultravox.calls.call_count == 1


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_plivo_signature_for_the_public_url_needs_public_base_url(
    method: str, no_ultravox: respx.MockRouter
) -> None:
    public = "https://bridge.example.com/"
    webhook = plivo_webhook(plivo_fields(), method=method, signed_base=public.rstrip("/"))
    async with running_app(make_settings()) as client:
        refused = await webhook.send(client)
    async with running_app(make_settings(public_base_url=public)) as client:
        accepted = await webhook.send(client)
    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert no_ultravox.calls.call_count == 1


@pytest.mark.parametrize("endpoint", ["incoming", "fallback"])
async def test_provider_without_secret_answers_503(
    provider: ProviderCase, endpoint: str, no_ultravox: respx.MockRouter
) -> None:
    secret_setting = {
        "twilio": "twilio_auth_token",
        "telnyx": "telnyx_public_key",
        "plivo": "plivo_auth_token",
    }[provider.name]
    settings = make_settings(**{secret_setting: ""})
    webhook = provider.webhook(provider.fields(), path=f"/{provider.name}/{endpoint}")
    async with running_app(settings) as client:
        response = await webhook.send(client)
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.text == f"no {provider.name} secret is configured\n"
    assert no_ultravox.calls.call_count == 0
    assert ready.status_code == 200
    assert ready.json()["providers"][provider.name] is False


async def test_unsigned_webhook_is_served_when_signatures_are_off(
    no_ultravox: respx.MockRouter,
) -> None:
    settings = make_settings(verify_signatures=False, twilio_auth_token="")
    async with running_app(settings) as client:
        response = await client.post(
            "/twilio/incoming",
            data=twilio_fields(),
        )
    assert response.status_code == 200
    assert "<Stream" in response.text
    assert no_ultravox.calls.call_count == 1


@pytest.mark.parametrize("missing", ["call_id", "From", "To"])
async def test_webhook_without_a_required_field_is_bad_request(
    provider: ProviderCase, missing: str, no_ultravox: respx.MockRouter
) -> None:
    name = provider.call_id_field if missing == "call_id" else missing
    fields = {k: v for k, v in provider.fields().items() if k != name}
    async with running_app(make_settings()) as client:
        response = await provider.webhook(fields).send(client)
    assert response.status_code == 400
    assert response.text == f"missing field(s): {name}\n"
    assert no_ultravox.calls.call_count == 0


async def test_body_over_64_kib_is_refused_before_anything_else(
    provider: ProviderCase, no_ultravox: respx.MockRouter
) -> None:
    fields = {**provider.fields(), "Padding": "x" * 70_000}
    webhook = provider.webhook(fields, method="POST")
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
        # The service goes on serving after the refusal.
        after = await provider.webhook(provider.fields(), method="POST").send(client)
    assert response.status_code == 413
    assert response.text == "body over 65536 bytes\n"
    assert after.status_code == 200
    assert no_ultravox.calls.call_count == 1


async def test_chunked_body_over_64_kib_is_refused(no_ultravox: respx.MockRouter) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"A=" + b"x" * 4096 + b"&"

    async with running_app(make_settings()) as client:
        response = await client.post(
            "/twilio/incoming",
            content=chunks(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": "x",
            },
        )
    assert response.status_code == 413
    assert no_ultravox.calls.call_count == 0


async def test_a_body_sent_a_byte_at_a_time_costs_in_proportion_to_its_size() -> None:
    """A client may send its body a byte a message, within the body deadline and before any
    signature is checked: gathering it must copy it a bounded number of times, not once per
    message (64 KiB a byte at a time would be 2 GiB copied)."""
    copied = 0

    class Chunk(bytes):
        def __radd__(self, before: object) -> bytes:
            """`before + chunk`, of immutable bytes: both are copied into a new object. (Added
            to a bytearray, the chunk is appended in place.)"""
            if not isinstance(before, bytes):
                return NotImplemented
            nonlocal copied
            copied += len(before) + len(self)
            return bytes(before) + bytes(self)

    messages = [
        {"type": "http.request", "body": Chunk(b"x"), "more_body": True}
        for _ in range(MAX_BODY_BYTES)
    ]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    pending = iter(messages)

    async def receive() -> Message:
        return next(pending)

    assert await receive_body(receive, "") == b"x" * MAX_BODY_BYTES
    assert copied <= 4 * MAX_BODY_BYTES


async def test_body_that_is_not_utf8_is_bad_request(no_ultravox: respx.MockRouter) -> None:
    async with running_app(make_settings(verify_signatures=False)) as client:
        response = await client.post(
            "/twilio/incoming",
            content=b"CallSid=\xff\xfe",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 400
    assert response.text == "the body is not UTF-8\n"
    assert no_ultravox.calls.call_count == 0


async def test_unknown_provider_is_not_found(no_ultravox: respx.MockRouter) -> None:
    async with running_app(make_settings()) as client:
        response = await client.post(f"{BASE_URL}/acme/incoming", content=b"CallSid=1")
    assert response.status_code == 404
    assert response.text == "unknown provider 'acme'\n"
    assert no_ultravox.calls.call_count == 0


@pytest.mark.parametrize(
    ("case", "call_id", "message"),
    [
        # Twilio and Plivo sign names and values run together: "CallSid=CA1, CallStatus=ringing"
        # signs like "CallSid=CA1CallStatusringing", so only a well-formed id is taken.
        ("twilio", "CA1CallStatusringing", "CallSid is not a twilio call id\n"),
        (
            "plivo",
            "8e6d1c4a-0000-4000-8000-00000000a001Direction",
            "CallUUID is not a plivo call id\n",
        ),
    ],
)
async def test_call_id_not_of_the_provider_s_form_is_bad_request(
    case: str, call_id: str, message: str, no_ultravox: respx.MockRouter
) -> None:
    provider = {"twilio": (twilio_fields, twilio_webhook), "plivo": (plivo_fields, plivo_webhook)}
    fields, webhook = provider[case]
    async with running_app(make_settings()) as client:
        response = await webhook(fields(call_id)).send(client)
    assert response.status_code == 400
    assert response.text == message
    assert no_ultravox.calls.call_count == 0


@pytest.mark.parametrize("repeat", ["&To=%2B15005550009", "&To=%2B15005550001"])
async def test_webhook_with_a_repeated_field_is_bad_request(
    repeat: str, no_ultravox: respx.MockRouter
) -> None:
    body = urlencode(twilio_fields()) + repeat  # another value, or the same one again
    async with running_app(make_settings(verify_signatures=False)) as client:
        response = await client.post(
            "/twilio/incoming",
            content=body.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 400
    assert response.text == "field To is repeated\n"
    assert no_ultravox.calls.call_count == 0


async def test_plivo_get_with_a_query_that_is_not_utf8_is_refused_not_a_crash(
    no_ultravox: respx.MockRouter,
) -> None:
    # The plivo SDK's validator raises UnicodeEncodeError on the percent-encoded bytes.
    webhook = plivo_webhook(plivo_fields(), method="GET")
    webhook.url += "&Extra=%FF%FE%80"
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
        after = await plivo_webhook(plivo_fields(), method="GET").send(client)
    assert response.status_code == 403
    assert response.text == "the plivo signature could not be checked (UnicodeEncodeError)\n"
    assert after.status_code == 200
    assert no_ultravox.calls.call_count == 1


@pytest.mark.parametrize(
    ("case", "target"),
    [
        ("twilio", "twilio.request_validator.RequestValidator.compute_signature"),
        ("telnyx", "nacl.signing.VerifyKey.verify"),
        ("plivo", "plivo.utils.signature_v3.validate_v3_signature"),
    ],
)
async def test_a_provider_sdk_failing_during_verification_is_a_403(
    case: str, target: str, no_ultravox: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("the SDK tripped over the input")

    webhook = {"twilio": twilio_webhook, "telnyx": telnyx_webhook, "plivo": plivo_webhook}[case]
    fields = {"twilio": twilio_fields, "telnyx": telnyx_fields, "plivo": plivo_fields}[case]
    signed = webhook(fields(), method="POST")  # signed by the SDK before it breaks
    monkeypatch.setattr(target, broken)
    async with running_app(make_settings()) as client:
        response = await signed.send(client)
    assert response.status_code == 403
    assert response.text == f"the {case} signature could not be checked (RuntimeError)\n"
    assert no_ultravox.calls.call_count == 0


async def test_a_forged_host_verifies_only_while_public_base_url_is_unset(
    no_ultravox: respx.MockRouter,
) -> None:
    # Someone who can sign for their own host (a captured request, their own Twilio account
    # pointed at evil.example.com) names that host; only PUBLIC_BASE_URL pins the URL checked.
    # (uvicorn would take the scheme from X-Forwarded-Proto too; in-process the Host is enough.)
    webhook = twilio_webhook(twilio_fields(), signed_base="http://evil.example.com")
    webhook.headers = {**webhook.headers, "Host": "evil.example.com"}
    async with running_app(make_settings()) as client:
        trusted = await webhook.send(client)
    async with running_app(make_settings(public_base_url="https://bridge.example.com")) as client:
        pinned = await webhook.send(client)
    assert trusted.status_code == 200
    assert pinned.status_code == 403
    assert no_ultravox.calls.call_count == 1
