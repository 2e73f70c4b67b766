"""Telnyx's GET instruction fetches: their signature covers the timestamp only, so GET is refused
unless TELNYX_ALLOW_GET is set, and then each signature vouches for one call id; and the call's
fields are held to their documented form whatever the method."""

import base64

import pytest
import respx

from tests.conftest import (
    Webhook,
    make_settings,
    running_app,
    telnyx_fields,
    telnyx_webhook,
)

ALLOW_GET = {"telnyx_allow_get": True}
OTHER_CALL = "v3:another-call-0002"
# +15005550100 in Arabic-Indic digits, which `\d` would take for digits.
ARABIC_INDIC_NUMBER = "+1\u0665\u0660\u0660\u0665\u0665\u0665\u0660\u0661\u0660\u0660"


@pytest.fixture
def no_ultravox(ultravox: respx.MockRouter) -> respx.MockRouter:
    """Ultravox's API where every call creation is counted."""
    ultravox.post(path__regex=r".*").respond(201, json={"callId": "c", "joinUrl": "wss://u/j"})
    return ultravox


def replayed(signed: Webhook, fields: dict[str, str], path: str = "/telnyx/incoming") -> Webhook:
    """`signed`'s headers on a GET with other fields: what anyone holding one signature can send."""
    return Webhook("GET", telnyx_webhook(fields, method="GET", path=path).url, signed.headers)


@pytest.mark.parametrize("path", ["/telnyx/incoming", "/telnyx/fallback", "/telnyx/outbound/ref"])
async def test_get_is_refused_by_default_with_the_fix(
    path: str, no_ultravox: respx.MockRouter
) -> None:
    webhook = telnyx_webhook(telnyx_fields(), method="GET", path=path)
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.text == (
        "Telnyx webhooks by GET are refused: Telnyx signs no query string, so anyone holding one "
        "signature could start calls. Set the TeXML application's Voice Method to POST (or "
        "TELNYX_ALLOW_GET=true)\n"
    )
    assert no_ultravox.calls.call_count == 0


async def test_post_is_answered_by_default(no_ultravox: respx.MockRouter) -> None:
    async with running_app(make_settings()) as client:
        response = await telnyx_webhook(telnyx_fields(), method="POST").send(client)
    assert response.status_code == 200
    assert "<Stream" in response.text
    assert no_ultravox.calls.call_count == 1


async def test_allowed_get_signature_vouches_for_one_call_only(
    no_ultravox: respx.MockRouter,
) -> None:
    signed = telnyx_webhook(telnyx_fields(), method="GET")
    async with running_app(make_settings(**ALLOW_GET)) as client:
        first = await signed.send(client)
        repeat = await signed.send(client)  # Telnyx's own retry: the same call
        forged = [
            await replayed(signed, telnyx_fields(f"v3:forged-call-{n:04d}")).send(client)
            for n in range(20)
        ]
        fallback = await replayed(signed, telnyx_fields(OTHER_CALL), "/telnyx/fallback").send(
            client
        )
    assert first.status_code == 200
    assert repeat.text == first.text
    assert {response.status_code for response in forged} == {403}
    assert forged[0].text == (
        "this Telnyx GET signature already vouched for another call (GET signs no call fields); "
        "set the TeXML application's Voice Method to POST\n"
    )
    assert fallback.status_code == 403
    assert no_ultravox.calls.call_count == 1


async def test_allowed_get_signature_spelt_otherwise_is_the_same_signature(
    no_ultravox: respx.MockRouter,
) -> None:
    signed = telnyx_webhook(telnyx_fields(), method="GET")
    header = signed.headers["telnyx-signature-ed25519"]
    # 64 bytes leave 4 unused bits in the last base64 digit: set one, same bytes decoded.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(header[-3]) | 1]
    respelt = header[:-3] + last + "=="
    assert respelt != header
    assert base64.b64decode(respelt) == base64.b64decode(header)
    forged = replayed(signed, telnyx_fields(OTHER_CALL))
    forged.headers = {**signed.headers, "telnyx-signature-ed25519": respelt}
    async with running_app(make_settings(**ALLOW_GET)) as client:
        first = await signed.send(client)
        second = await forged.send(client)
    assert first.status_code == 200
    assert second.status_code == 403
    assert no_ultravox.calls.call_count == 1


async def test_allowed_get_signature_is_held_across_replicas(
    redis_url: str, no_ultravox: respx.MockRouter
) -> None:
    signed = telnyx_webhook(telnyx_fields(), method="GET")
    settings = make_settings(redis_url=redis_url, **ALLOW_GET)
    async with running_app(settings) as one, running_app(settings) as two:
        first = await signed.send(one)
        forged = await replayed(signed, telnyx_fields(OTHER_CALL)).send(two)
    assert first.status_code == 200
    assert forged.status_code == 403
    assert no_ultravox.calls.call_count == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("CallSid", "v3:" + "A" * 60_000, "CallSid is not a telnyx call id"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef", "CallSid is not a telnyx call id"),
        ("CallSid", "v3:abc def", "CallSid is not a telnyx call id"),
        ("From", 'sip:"evil"@x', "From is not a phone number or SIP address"),
        ("From", "+15005550006\r\nX-Injected: 1", "From holds control characters"),
        ("From", ARABIC_INDIC_NUMBER, "From is not a phone number or SIP address"),
        ("To", "<sip:bob@example.com>", "To is not a phone number or SIP address"),
        ("To", "+1" + "5" * 300, "To is not a phone number or SIP address"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_fields_not_of_their_form_are_bad_request(
    method: str, field: str, value: str, message: str, no_ultravox: respx.MockRouter
) -> None:
    webhook = telnyx_webhook({**telnyx_fields(), field: value}, method=method)
    async with running_app(make_settings(**ALLOW_GET)) as client:
        response = await webhook.send(client)
    assert response.status_code == 400
    assert response.text == message + "\n"
    assert no_ultravox.calls.call_count == 0


@pytest.mark.parametrize(
    ("call_id", "from_number"),
    [
        ("v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg", "+15005550006"),
        ("v2:OycMASgvIjsGIAVEx8x3n9rYeKnUJx6a3V8VGhs5futnr17KZhujZA", "sip:alice@example.com"),
        ("v3:telnyx-call-0001", "anonymous"),
    ],
)
async def test_documented_call_ids_and_addresses_are_answered(
    call_id: str, from_number: str, no_ultravox: respx.MockRouter
) -> None:
    webhook = telnyx_webhook({**telnyx_fields(call_id), "From": from_number}, method="POST")
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 200
    assert "<Stream" in response.text
    assert no_ultravox.calls.call_count == 1
