"""Each provider's simulated webhook: signed exactly as the provider SDK signs, accepted by the
provider's own adapter, with a fresh call id; and each dialect's answers read correctly."""

import base64
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from nacl.signing import VerifyKey
from plivo.utils.signature_v3 import validate_v3_signature
from twilio.request_validator import RequestValidator

from app.calltypes import SignatureError, WebhookRequest
from app.providers import SIMULATORS, build_adapters
from app.providers.simulator import AnswerKind, SimulatedWebhook, Simulator, SimulatorError
from app.providers.telnyx.simulator import TelnyxSimulator
from tests.conftest import (
    BASE_URL,
    CALLED,
    CALLER,
    PLIVO_TOKEN,
    TELNYX_KEY,
    TELNYX_PUBLIC_KEY,
    TWILIO_TOKEN,
    make_settings,
)

TELNYX_PRIVATE_KEY = base64.b64encode(bytes(TELNYX_KEY)).decode()
SECRETS = {"twilio": TWILIO_TOKEN, "telnyx": TELNYX_PRIVATE_KEY, "plivo": PLIVO_TOKEN}
CASES = [(name, method) for name in ("twilio", "telnyx", "plivo") for method in ("POST", "GET")]


def simulator_for(name: str) -> Simulator:
    return SIMULATORS[name](SECRETS[name])


def url_for(name: str) -> str:
    # A query on the configured URL must survive and be signed, as providers keep it.
    return f"{BASE_URL}/{name}/incoming?route=sales"


def as_received(webhook: SimulatedWebhook) -> WebhookRequest:
    """The request as the service reads it, framework aside."""
    return WebhookRequest(
        method=webhook.method,
        url=webhook.url,
        headers=httpx.Headers(webhook.headers),
        query=parse_qsl(urlsplit(webhook.url).query, keep_blank_values=True),
        body=webhook.body,
        received_at=time.time(),
    )


@pytest.mark.parametrize(("name", "method"), CASES)
def test_simulated_webhook_passes_the_adapters_verification(name: str, method: str) -> None:
    adapter = build_adapters(make_settings(telnyx_allow_get=True))[name]
    webhook = simulator_for(name).webhook(url_for(name), method, CALLER, CALLED)

    request = as_received(webhook)
    adapter.check(request)
    call = adapter.parse(request)

    assert (call.call_id, call.from_number, call.to_number) == (webhook.call_id, CALLER, CALLED)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_simulated_webhook_signed_with_another_secret_is_refused(name: str, method: str) -> None:
    adapter = build_adapters(make_settings(telnyx_allow_get=True))[name]
    other = {
        "twilio": "another-token",
        "plivo": "another-token",
        "telnyx": base64.b64encode(b"\x02" * 32).decode(),
    }[name]
    webhook = SIMULATORS[name](other).webhook(url_for(name), method, CALLER, CALLED)

    with pytest.raises(SignatureError):
        adapter.check(as_received(webhook))


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_twilio_signature_is_the_sdks(method: str) -> None:
    webhook = simulator_for("twilio").webhook(url_for("twilio"), method, CALLER, CALLED)

    signed_params = webhook.fields if method == "POST" else {}
    expected = RequestValidator(TWILIO_TOKEN).compute_signature(webhook.url, signed_params)
    assert webhook.headers["X-Twilio-Signature"] == expected


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_plivo_signature_is_the_sdks(method: str) -> None:
    webhook = simulator_for("plivo").webhook(url_for("plivo"), method, CALLER, CALLED)

    signature = webhook.headers["X-Plivo-Signature-V3"]
    nonce = webhook.headers["X-Plivo-Signature-V3-Nonce"]
    params = dict(webhook.fields) if method == "POST" else {}
    assert validate_v3_signature(method, webhook.url, nonce, PLIVO_TOKEN, signature, dict(params))
    assert not validate_v3_signature(method, webhook.url, nonce, "other", signature, dict(params))


def test_plivo_nonce_is_fresh_for_every_request() -> None:
    simulator = simulator_for("plivo")
    nonces = {
        simulator.webhook(url_for("plivo"), "POST", CALLER, CALLED).headers[
            "X-Plivo-Signature-V3-Nonce"
        ]
        for _ in range(5)
    }
    assert len(nonces) == 5
    assert all(len(nonce) == 20 and nonce.isdigit() for nonce in nonces)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_telnyx_signature_verifies_with_the_public_key(method: str) -> None:
    simulator = TelnyxSimulator(TELNYX_PRIVATE_KEY, clock=lambda: 1_764_000_000.7)
    webhook = simulator.webhook(url_for("telnyx"), method, CALLER, CALLED)

    assert webhook.headers["telnyx-timestamp"] == "1764000000"
    signature = base64.b64decode(webhook.headers["telnyx-signature-ed25519"])
    key = VerifyKey(base64.b64decode(TELNYX_PUBLIC_KEY))
    key.verify(b"1764000000|" + webhook.body, signature)
    assert simulator.public_key == TELNYX_PUBLIC_KEY


@pytest.mark.parametrize("name", ["twilio", "telnyx", "plivo"])
def test_get_carries_the_fields_in_the_query_and_post_in_the_body(name: str) -> None:
    simulator = simulator_for(name)
    get = simulator.webhook(url_for(name), "GET", CALLER, CALLED)
    post = simulator.webhook(url_for(name), "POST", CALLER, CALLED)

    assert get.body == b""
    assert parse_qsl(urlsplit(get.url).query) == [("route", "sales"), *get.fields.items()]
    assert post.url == url_for(name)
    assert dict(parse_qsl(post.body.decode())) == post.fields
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert get.call_id != post.call_id


def test_field_sets_are_each_providers() -> None:
    twilio = simulator_for("twilio").fields(CALLER, CALLED)
    telnyx = simulator_for("telnyx").fields(CALLER, CALLED)
    plivo = simulator_for("plivo").fields(CALLER, CALLED)

    assert twilio["CallSid"].startswith("CA") and len(twilio["CallSid"]) == 34
    assert (twilio["From"], twilio["To"], twilio["Direction"]) == (CALLER, CALLED, "inbound")
    assert telnyx["CallSid"].startswith("v3:")
    assert sorted(telnyx) == [
        "AccountSid",
        "ApiVersion",
        "CallSid",
        "CallSidLegacy",
        "CallStatus",
        "ConnectionId",
        "From",
        "To",
    ]
    # Plivo sends numbers without the leading +.
    assert (plivo["From"], plivo["To"]) == (CALLER[1:], CALLED[1:])
    assert len(plivo["CallUUID"]) == 36


def test_telnyx_key_pair_halves_match() -> None:
    pair = TelnyxSimulator.make_key_pair()
    simulator = TelnyxSimulator(pair.private_key)
    assert simulator.public_key == pair.public_key
    assert len(base64.b64decode(pair.public_key)) == 32
    assert TelnyxSimulator.make_key_pair() != pair


@pytest.mark.parametrize("name", ["twilio", "plivo"])
def test_shared_secret_providers_have_no_key_pair(name: str) -> None:
    with pytest.raises(SimulatorError, match="there is no key pair to make"):
        SIMULATORS[name].make_key_pair()


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_unusable_telnyx_private_key_is_named(key: str) -> None:
    with pytest.raises(SimulatorError, match="TELNYX_PRIVATE_KEY must be the base64 of a 32-byte"):
        TelnyxSimulator(key)


# --- reading answers in each dialect ------------------------------------------------------


def read(name: str, xml: str) -> tuple[AnswerKind, str]:
    reading = simulator_for(name).read_answer(ET.fromstring(xml))
    return reading.kind, reading.detail


def test_twilio_answers_are_read() -> None:
    assert read("twilio", '<Response><Connect><Stream url="wss://u/j"/></Connect></Response>')[
        0
    ] is (AnswerKind.STREAM)
    assert read("twilio", '<Response><Reject reason="rejected"/></Response>') == (
        AnswerKind.REJECT,
        '<Reject reason="rejected">',
    )
    assert read("twilio", "<Response><Say>Sorry</Say><Dial>+15005550009</Dial></Response>") == (
        AnswerKind.FALLBACK,
        'says "Sorry", then forwards the call to +15005550009',
    )
    assert read(
        "twilio",
        '<Response><Connect><Stream url="wss://u/j" bidirectionalMode="rtp"/></Connect></Response>',
    ) == (
        AnswerKind.UNEXPECTED,
        "<Stream> carries bidirectionalMode, which TwiML does not define: "
        "is this another provider's webhook URL?",
    )
    assert read("twilio", '<Response><Connect><Stream url="ws://u/j"/></Connect></Response>') == (
        AnswerKind.UNEXPECTED,
        "<Stream url> is 'ws://u/j', not a wss:// URL",
    )


def test_telnyx_stream_without_rtp_or_with_mismatched_codecs_is_not_a_stream() -> None:
    good = (
        '<Response><Connect><Stream url="wss://u/j" bidirectionalMode="rtp" codec="L16" '
        'bidirectionalCodec="L16" bidirectionalSamplingRate="16000"/></Connect></Response>'
    )
    assert read("telnyx", good) == (
        AnswerKind.STREAM,
        "<Connect><Stream> to the Ultravox call, rtp, L16 at 16000 Hz",
    )
    kind, detail = read(
        "telnyx", '<Response><Connect><Stream url="wss://u/j"/></Connect></Response>'
    )
    assert kind is AnswerKind.UNEXPECTED
    assert "play nothing back (silence)" in detail
    kind, detail = read("telnyx", good.replace('codec="L16"', 'codec="PCMU"', 1))
    assert kind is AnswerKind.UNEXPECTED
    assert detail.startswith("<Stream codec='PCMU'> differs from bidirectionalCodec='L16'")
    assert read("telnyx", "<Response><Say>Sorry</Say><Hangup/></Response>") == (
        AnswerKind.FALLBACK,
        'says "Sorry", then hangs up',
    )


def test_plivo_answers_are_read() -> None:
    good = (
        '<Response><Stream bidirectional="true" keepCallAlive="true">wss://u/j</Stream></Response>'
    )
    assert read("plivo", good)[0] is AnswerKind.STREAM
    assert read("plivo", good.replace(' keepCallAlive="true"', "")) == (
        AnswerKind.UNEXPECTED,
        '<Stream> lacks keepCallAlive="true": Plivo would hang up at once',
    )
    assert read("plivo", '<Response><Hangup reason="rejected"/></Response>') == (
        AnswerKind.REJECT,
        '<Hangup reason="rejected">',
    )
    assert read(
        "plivo",
        "<Response><Speak>Sorry</Speak><Dial><Number>+15005550009</Number></Dial></Response>",
    ) == (AnswerKind.FALLBACK, 'says "Sorry", then forwards the call to +15005550009')
    assert read("plivo", '<Response><Connect><Stream url="wss://u/j"/></Connect></Response>') == (
        AnswerKind.UNEXPECTED,
        "a <Connect><Stream>: that is TwiML/TeXML, not Plivo XML",
    )
