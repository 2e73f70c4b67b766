"""Plivo's answer-URL request, simulated: its fields (numbers without `+`, as Plivo sends them),
a Signature V3 with a fresh nonce (computed by the plivo SDK's own signer) and how Plivo would
read the Plivo XML answer."""

import secrets
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import ClassVar

from app.providers.simulator import (
    AnswerKind,
    AnswerReading,
    HttpMethod,
    Simulator,
    SimulatorError,
    fallback_reading,
    unexpected,
)


class PlivoSimulator(Simulator):
    name = "plivo"
    title = "Plivo"
    default_method: ClassVar[HttpMethod] = "POST"
    call_id_field = "CallUUID"
    secret_setting = "PLIVO_AUTH_TOKEN"
    service_secret_setting = "PLIVO_AUTH_TOKEN"

    def __init__(self, auth_token: str) -> None:
        if not auth_token:
            raise SimulatorError("PLIVO_AUTH_TOKEN is empty")
        self._token = auth_token.encode()

    def fields(self, from_number: str, to_number: str) -> dict[str, str]:
        return {
            "CallStatus": "ringing",
            "CallUUID": str(uuid.uuid4()),
            "Direction": "inbound",
            "From": from_number.lstrip("+"),
            "To": to_number.lstrip("+"),
        }

    def sign(
        self, method: HttpMethod, url: str, params: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        # Imported here: the SDK loads its REST client too, which `ultravox-bridge serve` (the
        # same command) must not pay for.
        from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3

        nonce = str(secrets.randbelow(10**20)).zfill(20)
        # The SDK's builders update the dict they are given: hand them copies.
        base = (
            construct_post_url(url, dict(params))
            if method == "POST"
            else construct_get_url(url, {})
        )
        signature = get_signature_v3(self._token, base.decode(), nonce.encode()).decode()
        return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}

    def read_answer(self, root: ET.Element) -> AnswerReading:
        if root.tag != "Response":
            return unexpected(f"the root element is <{root.tag}>, not Plivo's <Response>")
        first = root[0] if len(root) else None
        if first is not None and first.tag == "Hangup" and first.get("reason"):
            return AnswerReading(AnswerKind.REJECT, f'<Hangup reason="{first.get("reason")}">')
        stream = root.find("Stream")
        if stream is not None:
            return _read_stream(stream)
        if root.find("Connect/Stream") is not None:
            return unexpected("a <Connect><Stream>: that is TwiML/TeXML, not Plivo XML")
        reading = fallback_reading(root, "Speak", "Dial", "Hangup")
        return reading or unexpected("Plivo XML with neither a <Stream> nor a <Speak>")


def _read_stream(stream: ET.Element) -> AnswerReading:
    url = stream.text or ""
    if url != url.strip():
        return unexpected("<Stream>'s URL has whitespace around it, which Plivo does not accept")
    if not url.startswith("wss://"):
        return unexpected(f"<Stream>'s URL is {url!r}, not a wss:// URL")
    if stream.get("bidirectional") != "true":
        return unexpected('<Stream> lacks bidirectional="true": the caller would hear nothing')
    if stream.get("keepCallAlive") != "true":
        return unexpected('<Stream> lacks keepCallAlive="true": Plivo would hang up at once')
    content_type = stream.get("contentType")
    return AnswerReading(
        AnswerKind.STREAM, f"<Stream> to the Ultravox call, bidirectional, {content_type}", url
    )
