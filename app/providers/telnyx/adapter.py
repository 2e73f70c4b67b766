"""Telnyx TeXML: instruction fetches signed with Ed25519 over `timestamp|body`, answered with
TeXML, which Telnyx's SDK does not build, so `xml.etree` does.

A GET fetch has no body, so its signature covers only the timestamp: the call's fields in the
query are unsigned, and every GET of the account in one second carries the same signature. GET
is therefore refused unless TELNYX_ALLOW_GET is set, and then each signature vouches for one
call id only."""

import base64
import binascii
import hashlib
import json
import logging
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from app.calltypes import (
    Answer,
    CallStatus,
    FallbackPlan,
    InboundCall,
    MalformedWebhook,
    MethodNotAllowed,
    SignatureError,
    WebhookRequest,
)
from app.providers.base import (
    ProviderAdapter,
    inbound_call,
    require_fields,
    seconds_field,
    single_values,
)
from app.providers.telnyx.options import TelnyxOptions
from app.settings import ServiceSettings
from app.store import MemoryStore, Store, StoreError
from app.ultravox import UltravoxCall

logger = logging.getLogger(__name__)

TEXML = "text/xml"
# Telnyx's own SDK accepts this much clock skew between its timestamp and ours, either way.
TIMESTAMP_TOLERANCE_SECONDS = 300
# A signature verifies for twice the tolerance; its record must outlive that.
SIGNATURE_RECORD_SECONDS = 2 * TIMESTAMP_TOLERANCE_SECONDS + 60
# CallSid is the call's call_control_id: a version, a colon and URL-safe base64 (v3:MdI9...).
CALL_SID = re.compile(r"v[0-9]{1,2}:[A-Za-z0-9_-]{1,128}")
# From and To: a phone number or a SIP address, in ASCII, without quotes, spaces or control
# characters (a GET's query is unsigned, and these reach Ultravox and the logs).
ADDRESS = re.compile(r"[A-Za-z0-9+*#@:;=.,_~!%-]{1,256}")
STATUS_GET_REFUSED = (
    "Telnyx status callbacks by GET are refused, even with TELNYX_ALLOW_GET: Telnyx signs no "
    "query string, so one signature could end any call's record. Set the status callback "
    "method to POST"
)
# TeXML CallStatus values after which the call is over.
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})
GET_REFUSED = (
    "Telnyx webhooks by GET are refused: Telnyx signs no query string, so anyone holding one "
    "signature could start calls. Set the TeXML application's Voice Method to POST (or "
    "TELNYX_ALLOW_GET=true)"
)


def _texml(response: ET.Element) -> Answer:
    return Answer(ET.tostring(response, encoding="utf-8", xml_declaration=True), TEXML)


class TelnyxAdapter(ProviderAdapter):
    name = "telnyx"
    secret_setting = "TELNYX_PUBLIC_KEY"

    def __init__(self, settings: ServiceSettings, store: Store | None = None) -> None:
        super().__init__(settings)
        options = TelnyxOptions.of(settings)
        self._allow_get = options.telnyx_allow_get
        self._store = store if store is not None else MemoryStore()
        self._keys = [
            VerifyKey(base64.b64decode(key.get_secret_value())) for key in options.telnyx_public_key
        ]
        self._codec = options.telnyx_stream_codec
        self._sampling_rate = str(options.telnyx_stream_sampling_rate)

    @classmethod
    def build(cls, settings: ServiceSettings, store: Store) -> "TelnyxAdapter":
        return cls(settings, store)

    @property
    def has_secrets(self) -> bool:
        return bool(self._keys)

    def check(self, request: WebhookRequest) -> None:
        if request.method != "POST" and not self._allow_get:
            raise MethodNotAllowed(GET_REFUSED)
        super().check(request)

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
        fields = single_values(request.params())
        call = inbound_call(self.name, fields, "CallSid", "From", "To", CALL_SID)
        for name in ("From", "To"):
            if not ADDRESS.fullmatch(fields[name].strip()):
                raise MalformedWebhook(f"{name} is not a phone number or SIP address")
        return call

    async def hold(self, request: WebhookRequest, call: InboundCall) -> None:
        # A POST's signature covers its body, and so the call; a GET's covers the timestamp only.
        if request.method == "POST" or not self.verify_signatures:
            return
        timestamp = request.headers["telnyx-timestamp"]
        signature = base64.b64decode(request.headers["telnyx-signature-ed25519"])
        # Keyed on the signature's bytes, not the header's text, which base64 can spell otherwise.
        digest = hashlib.sha256(timestamp.encode() + b"|" + signature).hexdigest()
        key = f"signature:{self.name}:{digest}"
        try:
            first = await self._store.claim(key, call.call_id, SIGNATURE_RECORD_SECONDS)
        except StoreError as exc:
            logger.warning(
                "telnyx.signature_not_held",
                extra={"fields": {"call_id": call.call_id, "error": str(exc)}},
            )
            return
        if first is not None and first != call.call_id:
            raise SignatureError(
                "this Telnyx GET signature already vouched for another call (GET signs no "
                "call fields); set the TeXML application's Voice Method to POST"
            )

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        # Inbound TeXML calls report to the application's status callback (a form: CallSid,
        # CallStatus, CallDuration, HangupCause); outbound calls, placed with Call Control,
        # send its JSON events (`call.hangup` with `hangup_cause`, `start_time`, `end_time`).
        if request.method != "POST":
            # Unlike a GET webhook's, whose signature is held to one call, a status needs none
            # of that: Telnyx sends them by POST unless told otherwise.
            raise MethodNotAllowed(STATUS_GET_REFUSED)
        if request.body.lstrip().startswith(b"{"):
            return self._call_control_status(request.body)
        fields = single_values(request.params())
        call_sid, status = require_fields(fields, "CallSid", "CallStatus")
        if not CALL_SID.fullmatch(call_sid):
            raise MalformedWebhook("CallSid is not a Telnyx call control id")
        return CallStatus(
            provider=self.name,
            call_ids=(call_sid,),
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
        except (ValueError, AttributeError, KeyError, TypeError, RecursionError):
            raise MalformedWebhook("not a Telnyx call event (data.event_type, payload)") from None
        if not isinstance(call_control_id, str) or not isinstance(event_type, str):
            raise MalformedWebhook("not a Telnyx call event (data.event_type, payload)")
        if not CALL_SID.fullmatch(call_control_id):
            raise MalformedWebhook("call_control_id is not a Telnyx call control id")
        started, ended = _instant(payload.get("start_time")), _instant(payload.get("end_time"))
        cause = payload.get("hangup_cause")
        return CallStatus(
            provider=self.name,
            call_ids=(call_control_id,),
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
