"""Telnyx TeXML: instruction fetches signed with Ed25519 over `timestamp|body`, answered with
TeXML, which Telnyx's SDK does not build, so `xml.etree` does."""

import base64
import binascii
import xml.etree.ElementTree as ET
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from app.calltypes import Answer, FallbackPlan, InboundCall, SignatureError, WebhookRequest
from app.providers.base import ProviderAdapter, inbound_call, single_values
from app.providers.telnyx.options import TelnyxOptions
from app.settings import ServiceSettings
from app.ultravox import UltravoxCall

TEXML = "text/xml"
# Telnyx's own SDK accepts this much clock skew between its timestamp and ours, either way.
TIMESTAMP_TOLERANCE_SECONDS = 300


def _texml(response: ET.Element) -> Answer:
    return Answer(ET.tostring(response, encoding="utf-8", xml_declaration=True), TEXML)


class TelnyxAdapter(ProviderAdapter):
    name = "telnyx"
    secret_setting = "TELNYX_PUBLIC_KEY"

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        options = TelnyxOptions.of(settings)
        self._keys = [
            VerifyKey(base64.b64decode(key.get_secret_value())) for key in options.telnyx_public_key
        ]
        self._codec = options.telnyx_stream_codec
        self._sampling_rate = str(options.telnyx_stream_sampling_rate)

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
