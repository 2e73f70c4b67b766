"""Each adapter's signature check against requests signed the way the provider signs them."""

import base64
import time
from urllib.parse import urlencode

import pytest
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from app.calltypes import SignatureError, WebhookRequest
from app.providers.plivo.adapter import PlivoAdapter
from app.providers.telnyx.adapter import TelnyxAdapter
from app.providers.twilio.adapter import TwilioAdapter
from tests.conftest import make_settings


def webhook_request(
    url: str, headers: dict[str, str], fields: dict[str, str] | None = None, method: str = "POST"
) -> WebhookRequest:
    body = urlencode(fields).encode() if fields is not None else b""
    return WebhookRequest(
        method=method,
        url=url,
        headers={name.lower(): value for name, value in headers.items()},
        query=[],
        body=body,
        received_at=time.time(),
    )


# --- Twilio -------------------------------------------------------------------------------

KNOWN_ANSWER_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
KNOWN_ANSWER_FIELDS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_twilio_known_answer_vector_is_accepted() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    request = webhook_request(
        KNOWN_ANSWER_URL,
        {"X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="},
        KNOWN_ANSWER_FIELDS,
    )
    adapter.verify(request)  # raises if the signature does not match


def test_twilio_known_answer_with_another_field_value_is_refused() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    fields = {**KNOWN_ANSWER_FIELDS, "To": "+18005551213"}
    request = webhook_request(
        KNOWN_ANSWER_URL, {"X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}, fields
    )
    with pytest.raises(SignatureError, match="X-Twilio-Signature does not match"):
        adapter.verify(request)


def test_twilio_signature_of_another_account_is_refused() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    signature = RequestValidator("54321").compute_signature(KNOWN_ANSWER_URL, KNOWN_ANSWER_FIELDS)
    request = webhook_request(
        KNOWN_ANSWER_URL, {"X-Twilio-Signature": signature}, KNOWN_ANSWER_FIELDS
    )
    with pytest.raises(SignatureError):
        adapter.verify(request)


def test_twilio_get_signs_the_url_only() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    url = "https://bridge.example.com/twilio/incoming?" + urlencode(KNOWN_ANSWER_FIELDS)
    signature = RequestValidator("12345").compute_signature(url, {})
    adapter.verify(webhook_request(url, {"X-Twilio-Signature": signature}, method="GET"))


@pytest.mark.parametrize("token", ["old-token", "new-token"])
def test_twilio_rotation_list_accepts_each_token(token: str) -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="old-token, new-token"))
    signature = RequestValidator(token).compute_signature(KNOWN_ANSWER_URL, KNOWN_ANSWER_FIELDS)
    adapter.verify(
        webhook_request(KNOWN_ANSWER_URL, {"X-Twilio-Signature": signature}, KNOWN_ANSWER_FIELDS)
    )


@pytest.mark.parametrize(
    ("requested", "signed"),
    [
        (
            "https://bridge.example.com/twilio/incoming",
            "https://bridge.example.com/twilio/incoming",
        ),
        (
            "https://bridge.example.com/twilio/incoming",
            "https://bridge.example.com:443/twilio/incoming",
        ),
        (
            "https://bridge.example.com:443/twilio/incoming",
            "https://bridge.example.com/twilio/incoming",
        ),
        (
            "http://bridge.example.com:8080/twilio/incoming",
            "http://bridge.example.com/twilio/incoming",
        ),
    ],
)
def test_twilio_url_signed_with_or_without_its_port_is_accepted(
    requested: str, signed: str
) -> None:
    """As the SDK's `validate`: Twilio signs the URL with the port or without it."""
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    signature = RequestValidator("12345").compute_signature(signed, KNOWN_ANSWER_FIELDS)
    request = webhook_request(requested, {"X-Twilio-Signature": signature}, KNOWN_ANSWER_FIELDS)
    assert RequestValidator("12345").validate(requested, KNOWN_ANSWER_FIELDS, signature)
    adapter.verify(request)


def test_twilio_url_signed_with_another_port_is_refused() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    url = "https://bridge.example.com/twilio/incoming"
    signed = "https://bridge.example.com:8443/twilio/incoming"
    signature = RequestValidator("12345").compute_signature(signed, KNOWN_ANSWER_FIELDS)
    request = webhook_request(url, {"X-Twilio-Signature": signature}, KNOWN_ANSWER_FIELDS)
    with pytest.raises(SignatureError, match="X-Twilio-Signature does not match"):
        adapter.verify(request)


def test_twilio_shared_key_sha256_signature_is_accepted_and_sha1_of_it_refused() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="shared-secret"))
    validator = RequestValidator("shared-secret")
    sha256 = validator.compute_signature(KNOWN_ANSWER_URL, KNOWN_ANSWER_FIELDS, "HMAC_SHA256")
    settings = {
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    }
    adapter.verify(
        webhook_request(
            KNOWN_ANSWER_URL, {"X-Twilio-Signature": sha256, **settings}, KNOWN_ANSWER_FIELDS
        )
    )
    sha1 = validator.compute_signature(KNOWN_ANSWER_URL, KNOWN_ANSWER_FIELDS)
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(
            webhook_request(
                KNOWN_ANSWER_URL, {"X-Twilio-Signature": sha1, **settings}, KNOWN_ANSWER_FIELDS
            )
        )


def test_twilio_unknown_algorithm_is_refused_naming_it_briefly() -> None:
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    headers = {
        "X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
        "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5" + "5" * 100,
    }
    request = webhook_request(KNOWN_ANSWER_URL, headers, KNOWN_ANSWER_FIELDS)
    with pytest.raises(SignatureError) as refused:
        adapter.verify(request)
    assert str(refused.value) == "unsupported signature algorithm 'HMAC_MD5" + "5" * 32 + "'"


def test_twilio_url_whose_port_is_not_a_number_is_refused_as_unchecked() -> None:
    # A Host header of `bridge.example.com:99999` (no PUBLIC_BASE_URL): the SDK's URL parsing
    # raises, and the webhook is refused as one whose signature could not be checked.
    adapter = TwilioAdapter(make_settings(twilio_auth_token="12345"))
    url = "https://bridge.example.com:99999/twilio/incoming"
    request = webhook_request(url, {"X-Twilio-Signature": "x"}, KNOWN_ANSWER_FIELDS)
    with pytest.raises(SignatureError) as refused:
        adapter.check(request)
    assert str(refused.value) == "the twilio signature could not be checked (ValueError)"


# --- Telnyx -------------------------------------------------------------------------------

OLD_KEY = SigningKey(b"\x02" * 32)
NEW_KEY = SigningKey(b"\x03" * 32)


def public(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


def telnyx_headers(key: SigningKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode() + b"|" + body).signature
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": str(timestamp),
    }


@pytest.mark.parametrize("key", [OLD_KEY, NEW_KEY], ids=["old", "new"])
def test_telnyx_rotation_list_accepts_each_key(key: SigningKey) -> None:
    adapter = TelnyxAdapter(make_settings(telnyx_public_key=f"{public(OLD_KEY)},{public(NEW_KEY)}"))
    fields = {"CallSid": "v3:abc", "From": "+15005550006", "To": "+15005550001"}
    body = urlencode(fields).encode()
    adapter.verify(
        webhook_request(
            "http://any/telnyx/incoming", telnyx_headers(key, body, int(time.time())), fields
        )
    )


def test_telnyx_signature_over_another_body_is_refused() -> None:
    adapter = TelnyxAdapter(make_settings(telnyx_public_key=public(OLD_KEY)))
    now = int(time.time())
    headers = telnyx_headers(OLD_KEY, b"CallSid=v3%3Aabc&To=%2B15005550001", now)
    request = webhook_request("http://any/t", headers, {"CallSid": "v3:abc", "To": "+15005550002"})
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(request)


@pytest.mark.parametrize("skew", [-301, 301])
def test_telnyx_timestamp_outside_tolerance_is_refused(skew: int) -> None:
    adapter = TelnyxAdapter(make_settings(telnyx_public_key=public(OLD_KEY)))
    fields = {"CallSid": "v3:abc"}
    body = urlencode(fields).encode()
    request = webhook_request(
        "http://any/t", telnyx_headers(OLD_KEY, body, int(time.time()) + skew), fields
    )
    with pytest.raises(SignatureError, match="too old or in the future"):
        adapter.verify(request)


def test_telnyx_unreadable_signature_is_refused() -> None:
    adapter = TelnyxAdapter(make_settings(telnyx_public_key=public(OLD_KEY)))
    headers = {"telnyx-signature-ed25519": "not base64!", "telnyx-timestamp": str(int(time.time()))}
    with pytest.raises(SignatureError, match="unreadable"):
        adapter.verify(webhook_request("http://any/t", headers, {"CallSid": "x"}))


def test_telnyx_key_that_is_not_32_bytes_stops_start_up() -> None:
    with pytest.raises(ValueError, match="base64 of 32 raw bytes"):
        make_settings(telnyx_public_key=base64.b64encode(b"short").decode())


# --- Plivo --------------------------------------------------------------------------------


def plivo_signature(token: str, url: str, fields: dict[str, str], nonce: str) -> str:
    from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

    base = construct_post_url(url, dict(fields))
    return get_signature_v3(token.encode(), base.decode(), nonce.encode()).decode()


PLIVO_URL = "https://bridge.example.com/plivo/incoming"
PLIVO_FIELDS = {"CallUUID": "8e6d-1", "From": "15005550006", "To": "15005550001"}


@pytest.mark.parametrize("token", ["old-token", "new-token"])
def test_plivo_rotation_list_accepts_each_token(token: str) -> None:
    adapter = PlivoAdapter(make_settings(plivo_auth_token="old-token,new-token"))
    headers = {
        "X-Plivo-Signature-V3": plivo_signature(token, PLIVO_URL, PLIVO_FIELDS, "n1"),
        "X-Plivo-Signature-V3-Nonce": "n1",
    }
    adapter.verify(webhook_request(PLIVO_URL, headers, PLIVO_FIELDS))


def test_plivo_signature_with_another_nonce_is_refused() -> None:
    adapter = PlivoAdapter(make_settings(plivo_auth_token="old-token"))
    headers = {
        "X-Plivo-Signature-V3": plivo_signature("old-token", PLIVO_URL, PLIVO_FIELDS, "n1"),
        "X-Plivo-Signature-V3-Nonce": "n2",
    }
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(webhook_request(PLIVO_URL, headers, PLIVO_FIELDS))


def test_plivo_accepts_any_of_several_signatures_in_the_header() -> None:
    adapter = PlivoAdapter(make_settings(plivo_auth_token="old-token"))
    good = plivo_signature("old-token", PLIVO_URL, PLIVO_FIELDS, "n1")
    headers = {"X-Plivo-Signature-V3": f"bm90LWl0,{good}", "X-Plivo-Signature-V3-Nonce": "n1"}
    adapter.verify(webhook_request(PLIVO_URL, headers, PLIVO_FIELDS))


def test_plivo_signature_without_nonce_is_refused() -> None:
    adapter = PlivoAdapter(make_settings(plivo_auth_token="old-token"))
    headers = {"X-Plivo-Signature-V3": plivo_signature("old-token", PLIVO_URL, PLIVO_FIELDS, "n1")}
    with pytest.raises(SignatureError, match="nonce"):
        adapter.verify(webhook_request(PLIVO_URL, headers, PLIVO_FIELDS))


def test_plivo_request_whose_url_the_sdk_cannot_parse_is_refused_not_crashed() -> None:
    adapter = PlivoAdapter(make_settings(plivo_auth_token="old-token"))
    url = "http://~x/plivo/incoming"  # what an odd Host header makes of the URL
    headers = {"X-Plivo-Signature-V3": "c2ln", "X-Plivo-Signature-V3-Nonce": "n1"}
    with pytest.raises(SignatureError, match="does not match"):
        adapter.verify(webhook_request(url, headers, PLIVO_FIELDS))
