"""Telnyx's TeXML instruction fetch, simulated: its fields, an Ed25519 signature over
`timestamp|body` made with a test private key (PyNaCl, as Telnyx's SDK verifies it), and how
Telnyx would read the TeXML answer."""

import base64
import binascii
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import ClassVar

from nacl.signing import SigningKey

from app.providers.simulator import (
    AnswerKind,
    AnswerReading,
    HttpMethod,
    KeyPair,
    Simulator,
    SimulatorError,
    fallback_reading,
    unexpected,
)

SIMULATED_ACCOUNT_SID = "00000000-5151-4000-8000-000000000000"


def _signing_key(private_key: str) -> SigningKey:
    try:
        seed = base64.b64decode(private_key, validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != 32:
        raise SimulatorError(
            "TELNYX_PRIVATE_KEY must be the base64 of a 32-byte Ed25519 private key; make a test "
            "pair with `ultravox-bridge simulate telnyx --make-key-pair`"
        )
    return SigningKey(seed)


class TelnyxSimulator(Simulator):
    """Telnyx signs with its own private key, which nobody else has: simulating needs a test
    key pair whose public half the service also trusts (TELNYX_PUBLIC_KEY is a list)."""

    name = "telnyx"
    title = "Telnyx"
    # The service refuses Telnyx GETs unless TELNYX_ALLOW_GET is set: their query is unsigned.
    default_method: ClassVar[HttpMethod] = "POST"
    call_id_field = "CallSid"
    secret_setting = "TELNYX_PRIVATE_KEY"
    service_secret_setting = "TELNYX_PUBLIC_KEY"

    def __init__(self, private_key: str, clock: Callable[[], float] = time.time) -> None:
        self._key = _signing_key(private_key)
        self._clock = clock

    @classmethod
    def make_key_pair(cls) -> KeyPair:
        key = SigningKey.generate()
        return KeyPair(
            private_key=base64.b64encode(bytes(key)).decode(),
            public_key=base64.b64encode(bytes(key.verify_key)).decode(),
        )

    @property
    def public_key(self) -> str:
        """The public half, as TELNYX_PUBLIC_KEY takes it."""
        return base64.b64encode(bytes(self._key.verify_key)).decode()

    def fields(self, from_number: str, to_number: str) -> dict[str, str]:
        return {
            "AccountSid": SIMULATED_ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": "v3:" + secrets.token_urlsafe(24),
            "CallSidLegacy": "v3:" + secrets.token_urlsafe(24),
            "CallStatus": "ringing",
            "ConnectionId": str(secrets.randbelow(9 * 10**18) + 10**18),
            "From": from_number,
            "To": to_number,
        }

    def sign(
        self, method: HttpMethod, url: str, params: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        timestamp = str(int(self._clock()))
        signature = self._key.sign(timestamp.encode() + b"|" + body).signature
        return {
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": timestamp,
        }

    def forbidden_hint(self, url: str) -> str:
        return (
            "the service refused the signature. Telnyx signs the body and a timestamp, not the "
            "URL, so either the service's TELNYX_PUBLIC_KEY does not include the public key of "
            f"this TELNYX_PRIVATE_KEY ({self.public_key}; add it after a comma), or this "
            "machine's clock and the service's differ by more than 5 minutes."
        )

    def read_answer(self, root: ET.Element) -> AnswerReading:
        if root.tag != "Response":
            return unexpected(f"the root element is <{root.tag}>, not TeXML's <Response>")
        first = root[0] if len(root) else None
        if first is not None and first.tag == "Reject":
            return AnswerReading(AnswerKind.REJECT, f'<Reject reason="{first.get("reason")}">')
        stream = root.find("Connect/Stream")
        if stream is not None:
            return _read_stream(stream)
        reading = fallback_reading(root, "Say", "Dial", "Hangup")
        return reading or unexpected("TeXML with neither a <Connect><Stream> nor a <Say>")


def _read_stream(stream: ET.Element) -> AnswerReading:
    url = stream.get("url", "")
    if not url.startswith("wss://"):
        return unexpected(f"<Stream url> is {url!r}, not a wss:// URL")
    if stream.get("bidirectionalMode") != "rtp":
        return unexpected(
            '<Stream> lacks bidirectionalMode="rtp": Telnyx would stream the caller to Ultravox '
            "but play nothing back (silence)"
        )
    codec, back = stream.get("codec"), stream.get("bidirectionalCodec")
    if codec != back:
        return unexpected(
            f"<Stream codec={codec!r}> differs from bidirectionalCodec={back!r}: Telnyx needs "
            "them equal"
        )
    rate = stream.get("bidirectionalSamplingRate")
    return AnswerReading(
        AnswerKind.STREAM,
        f"<Connect><Stream> to the Ultravox call, rtp, {codec} at {rate} Hz",
        url,
    )
