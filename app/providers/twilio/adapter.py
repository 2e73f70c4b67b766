"""Twilio: voice webhooks signed with HMAC over URL and parameters, answered with TwiML."""

import email.utils
import functools
import hmac
import re
from typing import Any
from urllib.parse import urlparse

from twilio.request_validator import (
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)

from app.calltypes import (
    Answer,
    CallStatus,
    FallbackPlan,
    InboundCall,
    MalformedWebhook,
    SignatureError,
    WebhookRequest,
)
from app.providers.base import (
    ProviderAdapter,
    inbound_call,
    multi_map,
    require_fields,
    seconds_field,
    single_values,
)
from app.providers.twilio.answers import fallback_twiml, reject_twiml, stream_twiml
from app.providers.twilio.options import TwilioOptions
from app.settings import ServiceSettings
from app.ultravox import UltravoxCall

TWIML = "text/xml"
# A call's SID: CA and 32 hex digits. Checked so that a signed request cannot be re-cut (Twilio
# signs names and values run together) into one naming another call.
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
# CallStatus values after which the call is over.
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class SignedFields(dict[str, list[str]]):
    """The form fields as the twilio SDK's signer reads them: `getall(name)`, the first method it
    tries (a dict without it costs an AttributeError raised and caught per field), each look-up
    a dict access. A multi-dict that scans its fields per look-up, as Starlette's does, makes the
    signature quadratic in the field count."""

    def getall(self, name: str) -> list[str]:
        return self[name]


@functools.lru_cache(maxsize=64)
def _signed_urls(url: str) -> tuple[str, str]:
    """The URLs Twilio may have signed for a request to `url`, as the SDK's `validate` writes
    them: without the port, then with it (Twilio is not consistent). A webhook URL is the same
    for every call, so it is parsed once."""
    parsed = urlparse(url)
    return remove_port(parsed), add_port(parsed)


def _twiml(xml: str) -> Answer:
    # A character UTF-8 cannot hold (a lone surrogate in a join URL) as a character reference,
    # as the SDK's serialiser writes it, not an error after the Ultravox call was created.
    return Answer(xml.encode("utf-8", "xmlcharrefreplace"), TWIML)


class TwilioAdapter(ProviderAdapter):
    name = "twilio"
    secret_setting = "TWILIO_AUTH_TOKEN"

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        options = TwilioOptions.of(settings)
        self._validators = [
            RequestValidator(token.get_secret_value()) for token in options.twilio_auth_token
        ]

    @property
    def has_secrets(self) -> bool:
        return bool(self._validators)

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            raise SignatureError("missing X-Twilio-Signature")
        # GET webhooks sign the URL (with its query) only; POST ones add the form fields.
        params = SignedFields(multi_map(request.form())) if request.method == "POST" else {}
        algorithm = get_signature_algorithm(
            request.headers.get("x-twilio-webhooks-signature-settings")
        )
        # What the SDK's `validate` accepts (the URL without its port, then with it), each
        # signature computed by the SDK, stopping at the first that matches: one HMAC per
        # genuine webhook instead of two per auth token.
        signed = signature.encode("utf-8")
        urls = _signed_urls(request.url)  # a port that is not one: ValueError, refused by check
        try:
            for validator in self._validators:
                for url in urls:
                    computed = validator.compute_signature(url, params, algorithm)
                    if hmac.compare_digest(computed.encode("ascii"), signed):
                        return
        except ValueError:  # an algorithm the SDK does not know
            raise SignatureError(f"unsupported signature algorithm {algorithm[:40]!r}") from None
        raise SignatureError("X-Twilio-Signature does not match")

    def parse(self, request: WebhookRequest) -> InboundCall:
        fields = single_values(request.params())
        return inbound_call(self.name, fields, "CallSid", "From", "To", CALL_SID)

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        # The number's or the call's StatusCallback: CallStatus, CallDuration (seconds, on the
        # final report), SequenceNumber, Timestamp (RFC 2822), SipResponseCode.
        fields = single_values(request.params())
        call_sid, status = require_fields(fields, "CallSid", "CallStatus")
        if not CALL_SID.fullmatch(call_sid):
            raise MalformedWebhook("CallSid is not a twilio call id")
        sip_code = fields.get("SipResponseCode", "").strip()
        return CallStatus(
            provider=self.name,
            call_ids=(call_sid,),
            status=status[:32],
            final=status in FINAL_STATUSES,
            duration_seconds=seconds_field(fields, "CallDuration"),
            hangup_cause=f"sip {sip_code}" if sip_code.isdigit() else None,
            at=_rfc2822(fields.get("Timestamp")),
            sequence=fields.get("SequenceNumber", "")[:16] or None,
        )

    def medium(self) -> dict[str, Any]:
        return {"twilio": {}}

    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        return _twiml(stream_twiml(ultravox_call.join_url))

    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        return _twiml(fallback_twiml(plan))

    def reject_answer(self) -> Answer:
        return _twiml(reject_twiml())


def _rfc2822(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
