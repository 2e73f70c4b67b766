"""Twilio's voice webhook, simulated: its fields, its HMAC signature (computed by the twilio
SDK's own `RequestValidator`) and how Twilio would read the TwiML answer."""

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import ClassVar

from twilio.request_validator import RequestValidator

from app.providers.simulator import (
    AnswerKind,
    AnswerReading,
    HttpMethod,
    Simulator,
    SimulatorError,
    fallback_reading,
    unexpected,
)

# Attributes TwiML defines on <Stream>; anything else means the answer is not TwiML.
STREAM_ATTRIBUTES = frozenset({"url", "name", "track", "statusCallback", "statusCallbackMethod"})
# A fixed, obviously simulated account: the signature does not depend on it.
SIMULATED_ACCOUNT_SID = "AC" + "5" * 32


class TwilioSimulator(Simulator):
    name = "twilio"
    title = "Twilio"
    default_method: ClassVar[HttpMethod] = "POST"
    call_id_field = "CallSid"
    secret_setting = "TWILIO_AUTH_TOKEN"
    service_secret_setting = "TWILIO_AUTH_TOKEN"

    def __init__(self, auth_token: str) -> None:
        if not auth_token:
            raise SimulatorError("TWILIO_AUTH_TOKEN is empty")
        self._validator = RequestValidator(auth_token)

    def fields(self, from_number: str, to_number: str) -> dict[str, str]:
        return {
            "AccountSid": SIMULATED_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": "CA" + secrets.token_hex(16),
            "CallStatus": "ringing",
            "Called": to_number,
            "Caller": from_number,
            "Direction": "inbound",
            "From": from_number,
            "To": to_number,
        }

    def sign(
        self, method: HttpMethod, url: str, params: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        signature: str = self._validator.compute_signature(url, dict(params))
        return {"X-Twilio-Signature": signature}

    def read_answer(self, root: ET.Element) -> AnswerReading:
        if root.tag != "Response":
            return unexpected(f"the root element is <{root.tag}>, not TwiML's <Response>")
        first = root[0] if len(root) else None
        if first is not None and first.tag == "Reject":
            return AnswerReading(AnswerKind.REJECT, f'<Reject reason="{first.get("reason")}">')
        stream = root.find("Connect/Stream")
        if stream is not None:
            return _read_stream(stream)
        if root.find("Stream") is not None:
            return unexpected("a <Stream> outside <Connect>: not TwiML's bidirectional stream")
        reading = fallback_reading(root, "Say", "Dial", "Hangup")
        return reading or unexpected("TwiML with neither a <Connect><Stream> nor a <Say>")


def _read_stream(stream: ET.Element) -> AnswerReading:
    url = stream.get("url", "")
    foreign = sorted(set(stream.attrib) - STREAM_ATTRIBUTES)
    if foreign:
        return unexpected(
            f"<Stream> carries {', '.join(foreign)}, which TwiML does not define: "
            "is this another provider's webhook URL?"
        )
    if not url.startswith("wss://"):
        return unexpected(f"<Stream url> is {url!r}, not a wss:// URL")
    return AnswerReading(AnswerKind.STREAM, "<Connect><Stream> to the Ultravox call", url)
