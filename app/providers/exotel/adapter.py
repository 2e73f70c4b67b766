"""Exotel: the Voicebot applet's request for its stream URL, answered with JSON
`{"url": joinUrl}`. Exotel signs nothing, so a secret in the URL's path (with an optional
address allow-list and a rate limit) stands in for a signature. A JSON answer cannot speak, so
the fallback is a failed request: the Voicebot applet ends and the flow moves on to its next
applet, which holds the caller's fallback."""

import json
import re
from typing import Any

from app.calltypes import (
    Answer,
    CallStatus,
    FallbackPlan,
    InboundCall,
    MalformedWebhook,
    WebhookRequest,
)
from app.providers.base import ProviderAdapter, require_fields
from app.providers.exotel.fields import request_fields
from app.providers.exotel.guard import TokenBucket, check_address, check_token
from app.providers.exotel.numbers import to_e164
from app.providers.exotel.options import ExotelOptions
from app.providers.exotel.status import call_status, parse_status, status_fields
from app.providers.media import CallEvents
from app.settings import ServiceSettings
from app.ultravox import UltravoxCall

JSON = "application/json"
# Exotel's CallSid is 32 hex characters in the examples seen, not documented: any short id of
# URL-safe ASCII is taken.
CALL_SID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# What a placed call's CustomField holds: the reference of its pending answer.
REFERENCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
# A withheld caller: Exotel's value is undocumented, others write these.
WITHHELD = re.compile(r"[A-Za-z]{1,20}")
# The applet's fields have had two names over the years (Passthru, Connect's dynamic URL).
FROM_FIELDS = ("CallFrom", "From")
TO_FIELDS = ("CallTo", "To")
# Statuses of the answers that end the Voicebot applet: any failed request, as far as is known.
FALLBACK_STATUS = 503
REJECT_STATUS = 404


def _json(value: dict[str, Any], status_code: int = 200) -> Answer:
    return Answer(json.dumps(value, separators=(",", ":")).encode(), JSON, status_code)


def _first(fields: dict[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        if fields.get(name, "").strip():
            return fields[name].strip()
    raise MalformedWebhook(f"missing field: {' or '.join(names)}")


class ExotelAdapter(ProviderAdapter, CallEvents):
    name = "exotel"
    secret_setting = "EXOTEL_URL_TOKENS"
    takes_path_key = True

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        options = ExotelOptions.of(settings)
        self._tokens = [token.get_secret_value().encode() for token in options.exotel_url_tokens]
        self._allowed = options.exotel_allowed_ips
        self._calling_code = options.exotel_calling_code
        self._bucket = TokenBucket(
            options.exotel_rate_limit_per_second, options.exotel_rate_limit_burst
        )

    @property
    def has_secrets(self) -> bool:
        return bool(self._tokens)

    def check(self, request: WebhookRequest) -> None:
        # The allow-list holds whether or not tokens are checked (VERIFY_SIGNATURES), and the
        # rate limit counts only requests that passed both, so strangers cannot spend it.
        check_address(request.client, self._allowed)
        super().check(request)
        self._bucket.take()

    def verify(self, request: WebhookRequest) -> None:
        check_token(request.path_key, self._tokens)

    def parse(self, request: WebhookRequest) -> InboundCall:
        fields = request_fields(request)
        (call_id,) = require_fields(fields, "CallSid")
        if not CALL_SID.fullmatch(call_id):
            raise MalformedWebhook("CallSid is not an Exotel call id")
        caller = _first(fields, FROM_FIELDS)
        called = _first(fields, TO_FIELDS)
        return InboundCall(
            self.name,
            call_id,
            self._caller(caller),
            self._number("CallTo", called),
            fields,
        )

    def _number(self, field: str, value: str) -> str:
        try:
            return to_e164(value, self._calling_code)
        except ValueError as exc:
            raise MalformedWebhook(f"{field} {exc}") from None

    def _caller(self, value: str) -> str:
        # A withheld caller has no number to normalise; routing sees the word as it came.
        return value if WITHHELD.fullmatch(value) else self._number("CallFrom", value)

    def placed_call_reference(self, request: WebhookRequest) -> str | None:
        # Exotel runs a fixed flow for a placed call; the call's reference rides in CustomField,
        # which Calls/connect passes to the flow's applets.
        reference = request_fields(request).get("CustomField", "").strip()
        return reference if REFERENCE.fullmatch(reference) else None

    def medium(self) -> dict[str, Any]:
        return {"exotel": {}}

    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        return _json({"url": ultravox_call.join_url})

    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        # A JSON answer cannot speak `plan`; the flow's next applet is the fallback.
        return _json(
            {
                "outcome": "fallback",
                "detail": "no agent can take this call now; the flow's next applet takes it",
            },
            FALLBACK_STATUS,
        )

    def reject_answer(self) -> Answer:
        return _json(
            {
                "outcome": "rejected",
                "detail": "no agent answers this number; the flow's next applet takes the call",
            },
            REJECT_STATUS,
        )

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        return call_status(self.name, parse_status(request))

    def event_fields(self, request: WebhookRequest) -> dict[str, str]:
        # A placed call's StatusCallback, at /exotel/events/<token> (inbound flows send none).
        return status_fields(parse_status(request))
