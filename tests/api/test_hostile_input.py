"""Webhooks built to make signature checks expensive: refused before the work, or kept cheap."""

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import respx
from plivo.utils import signature_v3
from twilio.request_validator import RequestValidator

from app.calltypes import MAX_FIELDS, MalformedWebhook, WebhookRequest
from app.providers.base import inbound_call
from app.providers.plivo import adapter as plivo
from app.providers.twilio import adapter as twilio
from tests.conftest import (
    BASE_URL,
    TWILIO_TOKEN,
    ProviderCase,
    Webhook,
    created_call,
    make_settings,
    plivo_fields,
    plivo_webhook,
    running_app,
    twilio_fields,
    twilio_webhook,
)
from tests.relay.fakes import PUBLIC_BASE_URL, VONAGE_SECRET, vonage_token


@pytest.fixture
def no_ultravox(ultravox: respx.MockRouter) -> respx.MockRouter:
    ultravox.post(path__regex=r".*").respond(201, json={"callId": "c", "joinUrl": "wss://u/j"})
    return ultravox


@pytest.fixture
def signature_work(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The signature computations the Twilio and Plivo SDKs are asked for, by provider."""
    calls: list[str] = []
    compute = twilio.RequestValidator.compute_signature

    def counted_twilio(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("twilio")
        return compute(self, *args, **kwargs)

    construct = signature_v3.construct_post_url

    def counted_plivo(*args: Any, **kwargs: Any) -> Any:
        calls.append("plivo")
        return construct(*args, **kwargs)

    monkeypatch.setattr(twilio.RequestValidator, "compute_signature", counted_twilio)
    monkeypatch.setattr(signature_v3, "construct_post_url", counted_plivo)
    yield calls


def many_fields(count: int) -> bytes:
    return "&".join(f"f{n}=x" for n in range(count)).encode()


GARBAGE_SIGNATURES = {
    "twilio": {"X-Twilio-Signature": "bm90LWEtc2lnbmF0dXJl"},
    "telnyx": {"telnyx-signature-ed25519": "bm90LWEtc2lnbmF0dXJl", "telnyx-timestamp": "1"},
    "plivo": {"X-Plivo-Signature-V3": "bm90", "X-Plivo-Signature-V3-Nonce": "1234"},
}


async def test_form_of_thousands_of_fields_is_refused_before_any_signature_work(
    provider: ProviderCase, no_ultravox: respx.MockRouter, signature_work: list[str]
) -> None:
    # The shape of the attack: 64 KiB of distinct names and a garbage signature.
    body = many_fields(17_000)[: 64 * 1024]
    webhook = Webhook(
        "POST", f"{BASE_URL}/{provider.name}/incoming", GARBAGE_SIGNATURES[provider.name], body
    )
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 413
    assert response.text == f"the form has more than {MAX_FIELDS} fields\n"
    assert signature_work == []
    assert no_ultravox.calls.call_count == 0


async def test_form_one_field_over_the_cap_is_refused_whatever_its_content_type(
    no_ultravox: respx.MockRouter, signature_work: list[str]
) -> None:
    webhook = Webhook(
        "POST",
        f"{BASE_URL}/twilio/incoming",
        {**GARBAGE_SIGNATURES["twilio"], "content-type": "text/plain"},
        many_fields(MAX_FIELDS + 1),
    )
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 413
    assert signature_work == []


async def test_query_over_the_cap_is_refused_before_any_signature_work(
    provider: ProviderCase, no_ultravox: respx.MockRouter, signature_work: list[str]
) -> None:
    query = many_fields(MAX_FIELDS + 1).decode()
    url = f"{BASE_URL}/{provider.name}/incoming?{query}"
    webhook = Webhook("GET", url, GARBAGE_SIGNATURES[provider.name])
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 413
    assert response.text == f"the query has more than {MAX_FIELDS} fields\n"
    assert signature_work == []
    assert no_ultravox.calls.call_count == 0


def padded(fields: dict[str, str], total: int) -> dict[str, str]:
    """`fields` and enough extra ones to make `total` fields in all."""
    extra = {f"Extra{n}": str(n) for n in range(total - len(fields))}
    return {**fields, **extra}


@pytest.mark.parametrize(
    "build",
    [
        lambda: twilio_webhook(padded(twilio_fields(), MAX_FIELDS)),
        lambda: plivo_webhook(padded(plivo_fields(), MAX_FIELDS)),
    ],
    ids=["twilio", "plivo"],
)
async def test_genuine_webhook_of_exactly_the_cap_is_answered(
    build: Any, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    webhook: Webhook = build()
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 200
    assert b"<Stream" in response.content
    assert route.call_count == 1


async def test_twilio_signature_covers_every_value_of_a_repeated_name(
    no_ultravox: respx.MockRouter,
) -> None:
    # Signed over both values: the check passes, and reading the call refuses the repeat.
    fields = [*twilio_fields().items(), ("Digits", "1"), ("Digits", "2")]
    url = f"{BASE_URL}/twilio/incoming"
    signed = {name: [v for n, v in fields if n == name] for name, _ in fields}

    class Multi(dict[str, list[str]]):
        def getlist(self, name: str) -> list[str]:
            return self[name]

    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, Multi(signed))
    webhook = Webhook("POST", url, {"X-Twilio-Signature": signature}, urlencode(fields).encode())
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 400
    assert response.text == "field Digits is repeated\n"
    assert no_ultravox.calls.call_count == 0


def test_plivo_signed_params_list_every_value_of_a_repeated_name() -> None:
    body = b"a=1&" * (MAX_FIELDS - 2) + b"b=2&a=3"
    request = WebhookRequest("POST", f"{BASE_URL}/plivo/incoming", {}, [], body, 0.0)
    params = plivo._signed_params(request)
    assert params == {"a": ["1"] * (MAX_FIELDS - 2) + ["3"], "b": "2"}


async def test_vonage_body_nested_too_deep_to_decode_is_bad_request(
    no_ultravox: respx.MockRouter,
) -> None:
    # Hashed as sent, so the JWT vouches for it: the decoder's recursion limit must not be a 500.
    body = b"[" * 60_000
    headers = {"content-type": "application/json", "Authorization": f"Bearer {vonage_token(body)}"}
    webhook = Webhook("POST", f"{BASE_URL}/vonage/incoming", headers, body)
    settings = make_settings(vonage_signature_secret=VONAGE_SECRET, public_base_url=PUBLIC_BASE_URL)
    async with running_app(settings) as client:
        response = await webhook.send(client)
    assert response.status_code == 400
    assert response.text == "the body is not JSON\n"
    assert no_ultravox.calls.call_count == 0


@pytest.mark.parametrize("bad", ["\x00", "\x1b[2J", "\n"])
def test_a_call_id_with_control_characters_is_refused(bad: str) -> None:
    """For a provider whose call ids have no documented form (Vonage's `uuid`), a NUL would cut
    the id short where the records look ids up (SQLite's JSON functions), and a later report
    of the call would miss its record."""
    fields = {"uuid": f"63f61863{bad}x", "from": "+15005550006", "to": "+15005550001"}
    with pytest.raises(MalformedWebhook, match=r"^uuid holds control characters$"):
        inbound_call("vonage", fields, "uuid", "from", "to")
