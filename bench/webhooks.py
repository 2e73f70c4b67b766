"""The requests the benchmark sends: signed Twilio webhooks for the service, call creations
for the stand-in, and how to tell a right answer from a wrong one."""

import json
import uuid
from urllib.parse import urlencode

from processes import HOST
from twilio.request_validator import RequestValidator

TWILIO_TOKEN = "bench-twilio-token"
ULTRAVOX_KEY = "bench-ultravox-key"


def twilio_webhooks(port: int, count: int) -> list[bytes]:
    """Distinct inbound-call webhooks, each signed as Twilio signs it."""
    validator = RequestValidator(TWILIO_TOKEN)
    url = f"http://{HOST}:{port}/twilio/incoming"
    webhooks = []
    for _ in range(count):
        fields = {
            "AccountSid": "AC0123456789abcdef0123456789abcdef",
            "ApiVersion": "2010-04-01",
            "CallSid": "CA" + uuid.uuid4().hex,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": "+15005550006",
            "To": "+15005550001",
        }
        body = urlencode(fields).encode()
        head = (
            f"POST /twilio/incoming HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {validator.compute_signature(url, fields)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        webhooks.append(head.encode() + body)
    return webhooks


def ultravox_requests(port: int, count: int) -> list[bytes]:
    """Call creations like the ones the service sends, for timing the stand-in alone."""
    requests = []
    for _ in range(count):
        body = json.dumps(
            {
                "systemPrompt": "You are a friendly voice assistant answering a phone call.",
                "medium": {"twilio": {}},
                "firstSpeakerSettings": {"agent": {}},
                "metadata": {
                    "provider": "twilio",
                    "providerCallId": "CA" + uuid.uuid4().hex,
                    "callerNumber": "+15005550006",
                    "calledNumber": "+15005550001",
                },
            }
        ).encode()
        head = (
            f"POST /api/calls HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {ULTRAVOX_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def answered(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"status {status}"
    return None if b"<Stream" in body else "fallback instead of a stream"


def created(status: int, body: bytes) -> str | None:
    return None if status == 201 else f"status {status}"


# --- the run ---------------------------------------------------------------------------------
