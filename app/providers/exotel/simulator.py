"""Exotel's Voicebot request, simulated: the fields its URL-driven applets send (Indian numbers
in the national 0-form), by GET (the likely method) or POST, to the URL with its token, and
how the Voicebot applet would read the JSON answer."""

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from app.providers.simulator import (
    AnswerKind,
    AnswerReading,
    HttpMethod,
    SimulatedWebhook,
    Simulator,
    SimulatorError,
    unexpected,
)

# Exotel's home country, whose numbers its requests write in the national 0-form.
NATIONAL_PREFIX = "+91"
KEYED_PATHS = ("/exotel/incoming", "/exotel/outbound")


def exotel_number(number: str) -> str:
    """`number` as Exotel writes it: an Indian number in the national 0-form, others as given."""
    return (
        "0" + number.removeprefix(NATIONAL_PREFIX) if number.startswith(NATIONAL_PREFIX) else number
    )


class ExotelSimulator(Simulator):
    name = "exotel"
    title = "Exotel"
    default_method: ClassVar[HttpMethod] = "GET"
    call_id_field = "CallSid"
    secret_setting = "EXOTEL_URL_TOKENS"
    service_secret_setting = "EXOTEL_URL_TOKENS"

    def __init__(self, url_token: str) -> None:
        if not url_token:
            raise SimulatorError("EXOTEL_URL_TOKENS is empty")
        self._token = url_token

    def fields(self, from_number: str, to_number: str) -> dict[str, str]:
        return {
            "CallSid": uuid.uuid4().hex,
            "CallFrom": exotel_number(from_number),
            "CallTo": exotel_number(to_number),
            "Direction": "incoming",
            "Created": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S"),
            "CallType": "call-attempt",
        }

    def sign(
        self, method: HttpMethod, url: str, params: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        return {}  # Exotel signs nothing: the token in the URL's path stands in for it

    def webhook(
        self, url: str, method: HttpMethod, from_number: str, to_number: str
    ) -> SimulatedWebhook:
        return super().webhook(self._keyed(url), method, from_number, to_number)

    def _keyed(self, url: str) -> str:
        """`url` with the token as its last path segment, as the Voicebot applet is given it,
        unless it has a key already."""
        parts = urlsplit(url)
        path = parts.path.rstrip("/")
        if not path.endswith(KEYED_PATHS):
            return url
        return urlunsplit(parts._replace(path=f"{path}/{self._token}"))

    def read_answer(self, root: ET.Element) -> AnswerReading:
        return unexpected('an XML document: the Voicebot applet expects JSON {"url": "wss://..."}')

    def read_response(self, status: int, body: str) -> AnswerReading | None:
        try:
            answer: Any = json.loads(body)
        except ValueError:
            answer = None
        if status == 200:
            return _read_stream(answer)
        outcome = answer.get("outcome") if isinstance(answer, dict) else None
        if outcome == "fallback":
            return AnswerReading(
                AnswerKind.FALLBACK,
                f"failed with HTTP {status}, so the Voicebot applet ends and the flow moves on "
                "to its next applet (your Greeting or Connect fallback)",
            )
        if outcome == "rejected":
            return AnswerReading(
                AnswerKind.REJECT,
                f"HTTP {status} (no agent for this number): the flow moves on to its next applet",
            )
        return None  # a refusal: read by its status like every provider's

    def forbidden_hint(self, url: str) -> str:
        return (
            "the service refused the request (403): the token in the URL's path is not one of "
            "the service's EXOTEL_URL_TOKENS, or the service sets EXOTEL_ALLOWED_IPS and this "
            "machine's address is not in it. The URL must end /exotel/incoming/<token>."
        )


def _read_stream(answer: Any) -> AnswerReading:
    if not isinstance(answer, dict):
        return unexpected(
            'the answer is not a JSON object: the Voicebot applet expects {"url": ...}'
        )
    url = answer.get("url")
    if not isinstance(url, str):
        return unexpected('the JSON answer has no "url": the Voicebot applet would fail')
    if not url.startswith("wss://"):
        return unexpected(f'"url" is {url!r}, not a wss:// URL')
    return AnswerReading(AnswerKind.STREAM, '{"url": "wss://..."} to the Ultravox call', url)
