"""Plivo: answer-URL requests signed with Signature V3 (HMAC-SHA256 with a nonce), answered
with Plivo XML built by the plivo SDK."""

import re
from typing import Any

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
from app.providers.plivo.answers import plivo_xml, xml_answer
from app.providers.plivo.options import PlivoOptions
from app.settings import ServiceSettings
from app.ultravox import UltravoxCall

PLIVO_XML = "application/xml"
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "timeout", "no-answer", "cancel"})
# A call's UUID. Checked so that a signed request cannot be re-cut (Plivo signs names and values
# run together) into one naming another call.
CALL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _signed_by(token: str, request: WebhookRequest, nonce: str, signature: str) -> bool:
    """Whether `signature` (the header, possibly several comma-separated) is Plivo's V3 signature
    of `request` with `token`, as the plivo SDK computes it."""
    from plivo.exceptions import ValidationError
    from plivo.utils.signature_v3 import validate_v3_signature

    method = "POST" if request.method == "POST" else "GET"
    # The SDK updates the dict it is given with the URL's query: give each call its own.
    params = _signed_params(request) if method == "POST" else {}
    try:
        return bool(validate_v3_signature(method, request.url, nonce, token, signature, params))
    except ValidationError:  # the SDK refuses a URL it cannot parse (an odd Host header)
        return False


def _signed_params(request: WebhookRequest) -> dict[str, Any]:
    """The form fields as the SDK's signer expects them: a list where a name repeats."""
    return {
        name: values[0] if len(values) == 1 else values
        for name, values in multi_map(request.form()).items()
    }


class PlivoAdapter(ProviderAdapter):
    name = "plivo"
    secret_setting = "PLIVO_AUTH_TOKEN"

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        options = PlivoOptions.of(settings)
        self._tokens = [token.get_secret_value() for token in options.plivo_auth_token]
        self._content_type = options.plivo_stream_content_type
        if self.ready:
            plivo_xml()  # at start-up, so that no caller waits for the SDK's import

    @property
    def has_secrets(self) -> bool:
        return bool(self._tokens)

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("x-plivo-signature-v3")
        nonce = request.headers.get("x-plivo-signature-v3-nonce")
        if not signature or not nonce:
            raise SignatureError("missing X-Plivo-Signature-V3 or its nonce")
        if any(_signed_by(token, request, nonce, signature) for token in self._tokens):
            return
        raise SignatureError("X-Plivo-Signature-V3 does not match")

    def parse(self, request: WebhookRequest) -> InboundCall:
        fields = single_values(request.params())
        return inbound_call(self.name, fields, "CallUUID", "From", "To", CALL_UUID)

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        # The hangup URL (the application's, or the outbound call's): CallUUID, CallStatus,
        # Duration and BillDuration (seconds), HangupCause; an outbound call's RequestUUID is
        # the id its creation returned.
        fields = single_values(request.params())
        call_uuid, status = require_fields(fields, "CallUUID", "CallStatus")
        if not CALL_UUID.fullmatch(call_uuid):
            raise MalformedWebhook("CallUUID is not a plivo call id")
        others = tuple(
            fields[name].strip()
            for name in ("RequestUUID", "ALegRequestUUID")
            if CALL_UUID.fullmatch(fields.get(name, "").strip())
        )
        final = fields.get("Event") == "Hangup" or status in FINAL_STATUSES
        return CallStatus(
            provider=self.name,
            call_ids=(call_uuid, *others),
            status=status[:32],
            final=final,
            duration_seconds=seconds_field(fields, "Duration"),
            hangup_cause=(fields.get("HangupCauseName") or fields.get("HangupCause") or "")[:64]
            or None,
        )

    def medium(self) -> dict[str, Any]:
        return {"plivo": {}}

    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        response.add(
            plivoxml.StreamElement(
                ultravox_call.join_url,
                bidirectional=True,
                keepCallAlive=True,
                contentType=self._content_type,
            )
        )
        return xml_answer(response)

    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        response.add(plivoxml.SpeakElement(plan.message))
        if plan.dial_number:
            dial = plivoxml.DialElement()
            dial.add(plivoxml.NumberElement(plan.dial_number))
            response.add(dial)
        else:
            response.add(plivoxml.HangupElement())
        return xml_answer(response)

    def reject_answer(self) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        response.add(plivoxml.HangupElement(reason="rejected"))
        return xml_answer(response)
