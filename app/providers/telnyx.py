"""Telnyx TeXML: instruction fetches signed with Ed25519 over `timestamp|body`, answered with
TeXML, which Telnyx's SDK does not build, so `xml.etree` does."""

import base64
import binascii
import json
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from app.providers.base import (
    Answer,
    CallStatus,
    FallbackPlan,
    InboundCall,
    MalformedWebhook,
    ProviderAdapter,
    SignatureError,
    WebhookRequest,
    inbound_call,
    require_fields,
    seconds_field,
    single_values,
)
from app.settings import Settings
from app.ultravox import UltravoxCall

TEXML = "text/xml"
# Telnyx's own SDK accepts this much clock skew between its timestamp and ours, either way.
TIMESTAMP_TOLERANCE_SECONDS = 300
# TeXML CallStatus values after which the call is over.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})


def _texml(response: ET.Element) -> Answer:
    return Answer(ET.tostring(response, encoding="utf-8", xml_declaration=True), TEXML)


class TelnyxAdapter(ProviderAdapter):
    name = "telnyx"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._keys = [
            VerifyKey(base64.b64decode(key.get_secret_value()))
            for key in settings.telnyx_public_key
        ]
        self._codec = settings.telnyx_stream_codec
        self._sampling_rate = str(settings.telnyx_stream_sampling_rate)

    @property
    def has_secrets(self) -> bool:
        return bool(self._keys)

    def verify(self, request: WebhookRequest) -> None:
        signature_b64 = request.headers.get("telnyx-signature-ed25519")
        timestamp = request.headers.get("telnyx-timestamp")
        if not signature_b64 or not timestamp:
            raise SignatureError("missing telnyx-signature-ed25519 or telnyx-timestamp")
        try:
            signed_at = int(timestamp)
            signature = base64.b64decode(signature_b64, validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError("unreadable Telnyx signature headers") from None
        if abs(request.received_at - signed_at) > TIMESTAMP_TOLERANCE_SECONDS:
            raise SignatureError("Telnyx timestamp is too old or in the future")
        message = timestamp.encode() + b"|" + request.body
        for key in self._keys:
            try:
                key.verify(message, signature)
                return
            except (BadSignatureError, ValueError):
                continue
        raise SignatureError("telnyx-signature-ed25519 does not match")

    def parse(self, request: WebhookRequest) -> InboundCall:
        return inbound_call(self.name, single_values(request.params()), "CallSid", "From", "To")

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        # Inbound TeXML calls report to the application's status callback (a form: CallSid,
        # CallStatus, CallDuration, HangupCause); outbound calls, placed with Call Control,
        # send its JSON events (`call.hangup` with `hangup_cause`, `start_time`, `end_time`).
        if request.method == "POST" and request.body.lstrip().startswith(b"{"):
            return self._call_control_status(request.body)
        fields = single_values(request.params())
        call_sid, status = require_fields(fields, "CallSid", "CallStatus")
        return CallStatus(
            provider=self.name,
            call_ids=(call_sid[:128],),
            status=status[:32],
            final=status in FINAL_STATUSES,
            duration_seconds=seconds_field(fields, "CallDuration"),
            hangup_cause=fields.get("HangupCause", "")[:64] or None,
            sequence=fields.get("SequenceNumber", "")[:16] or None,
        )

    def _call_control_status(self, body: bytes) -> CallStatus:
        try:
            data = json.loads(body).get("data")
            event_type = data["event_type"]
            payload = data["payload"]
            call_control_id = payload["call_control_id"]
        except (ValueError, AttributeError, KeyError, TypeError):
            raise MalformedWebhook("not a Telnyx call event (data.event_type, payload)") from None
        if not isinstance(call_control_id, str) or not isinstance(event_type, str):
            raise MalformedWebhook("not a Telnyx call event (data.event_type, payload)")
        started, ended = _instant(payload.get("start_time")), _instant(payload.get("end_time"))
        cause = payload.get("hangup_cause")
        return CallStatus(
            provider=self.name,
            call_ids=(call_control_id[:128],),
            status=event_type.removeprefix("call.")[:32],
            final=event_type == "call.hangup",
            duration_seconds=ended - started if started and ended and ended >= started else None,
            hangup_cause=cause[:64] if isinstance(cause, str) and cause else None,
            at=_instant(data.get("occurred_at")),
            sequence=str(data.get("id", ""))[:64] or None,
        )

    def medium(self) -> dict[str, Any]:
        return {"telnyx": {}}

    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        response = ET.Element("Response")
        connect = ET.SubElement(response, "Connect")
        # Without bidirectionalMode="rtp" Telnyx plays nothing back; the two codecs must match.
        ET.SubElement(
            connect,
            "Stream",
            url=ultravox_call.join_url,
            bidirectionalMode="rtp",
            codec=self._codec,
            bidirectionalCodec=self._codec,
            bidirectionalSamplingRate=self._sampling_rate,
        )
        return _texml(response)

    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        response = ET.Element("Response")
        ET.SubElement(response, "Say").text = plan.message
        if plan.dial_number:
            ET.SubElement(response, "Dial").text = plan.dial_number
        else:
            ET.SubElement(response, "Hangup")
        return _texml(response)

    def reject_answer(self) -> Answer:
        response = ET.Element("Response")
        ET.SubElement(response, "Reject", reason="rejected")
        return _texml(response)


def _instant(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
