"""The values that flow between the web layer, the providers, routing and the call flows: an
incoming call, normalised; the answer a provider receives; the fallback plan; and the webhook
request with the typed refusals of it. Below everything that uses them, so routing, the relay
and the providers all import them downward."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar
from urllib.parse import unquote

# Providers send a few dozen fields per webhook (Twilio about 20, Plivo about 15). Far more is an
# attack on the signature checks, whose SDK algorithms cost more than linear time per field: a
# request past this is refused before any of them runs.
MAX_FIELDS = 200


class WebhookError(Exception):
    """A webhook the service refuses; `status_code` is the HTTP answer, sent with `headers`."""

    status_code = 400
    headers: ClassVar[Mapping[str, str]] = {}


class MalformedWebhook(WebhookError):
    """The webhook lacks a field the service needs, or cannot be decoded."""

    status_code = 400


class SignatureError(WebhookError):
    """The webhook's signature is missing, wrong or stale: it did not come from the provider."""

    status_code = 403


class MethodNotAllowed(WebhookError):
    """A webhook sent with an HTTP method whose signature would not cover the call's fields."""

    status_code = 405
    headers: ClassVar[Mapping[str, str]] = {"Allow": "POST"}


class TooManyFields(WebhookError):
    """The form or query has more fields than any provider sends."""

    status_code = 413


def check_field_count(count: int, where: str) -> None:
    """Refuse a form or query of more than `MAX_FIELDS` fields (`TooManyFields`)."""
    if count > MAX_FIELDS:
        raise TooManyFields(f"the {where} has more than {MAX_FIELDS} fields")


class NoStatusCallbacks(WebhookError):
    """The provider has no status callbacks on this service."""

    status_code = 404


class ProviderNotConfigured(WebhookError):
    """Signatures are required but no secret is configured for this provider."""

    status_code = 503


def parse_fields(text: str) -> tuple[tuple[str, str], ...]:
    """A form body or query string's fields, in order: what `urllib.parse.parse_qsl(text,
    keep_blank_values=True)` returns (a test holds them equal on random input), without its
    per-field calls for the names and values that need no decoding, most of a provider's."""
    fields = []
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            if "+" in name or "%" in name:
                name = unquote(name.replace("+", " "))
            if "+" in value or "%" in value:
                value = unquote(value.replace("+", " "))
            fields.append((name, value))
    return tuple(fields)


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as a provider sent it, independent of the web framework.

    `url` is the URL the provider requested (rebuilt from PUBLIC_BASE_URL when set), which is
    what providers sign. `path_key` is the key segment of the URL's path, for providers that
    sign nothing and are authenticated by a secret in the URL (`/{provider}/incoming/{key}`)
    and for answer URLs (`/{provider}/outbound/{reference}`). `client` is the sender's address
    as the server reports it (a trusted proxy's `X-Forwarded-For` applied, FORWARDED_ALLOW_IPS).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    body: bytes
    received_at: float
    path_key: str | None = None
    client: str | None = None

    def form(self) -> Sequence[tuple[str, str]]:
        """The form-encoded body's fields, in order (empty for GET); `TooManyFields` past
        `MAX_FIELDS`, counted before anything is parsed. Parsed once: the signature check and
        the reading of the call both ask for it."""
        return self._form

    @cached_property
    def _form(self) -> tuple[tuple[str, str], ...]:
        if not self.body:
            return ()
        check_field_count(self.body.count(b"&") + 1, "form")
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedWebhook("the body is not UTF-8") from None
        return parse_fields(text)

    def params(self) -> Sequence[tuple[str, str]]:
        """The webhook's fields: the form body for POST, the query string for GET."""
        return self._form if self.method == "POST" else self.query


@dataclass(frozen=True)
class InboundCall:
    """A provider's incoming call, normalised: who called whom, through which provider."""

    provider: str
    call_id: str
    from_number: str
    to_number: str
    raw: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class CallStatus:
    """A provider's report on a call's progress (a status callback or call event), normalised.

    `call_ids` holds the call's id first, then any other id the provider knows it by (an
    outbound call's request id); `final` says the call is over; `sequence` tells repeats of one
    report from new reports of the same status."""

    provider: str
    call_ids: tuple[str, ...]
    status: str
    final: bool
    duration_seconds: float | None = None
    hangup_cause: str | None = None
    at: float | None = None
    sequence: str | None = None


@dataclass(frozen=True)
class Answer:
    """The body and media type the provider receives in reply to its webhook, and the HTTP
    status: 200, except for a provider whose fallback is a failed request (Exotel's Voicebot
    moves on to the flow's next applet)."""

    body: bytes
    media_type: str
    status_code: int = 200


@dataclass(frozen=True)
class FallbackPlan:
    """What a caller hears when no agent can take the call: a message, then a dial or hang-up."""

    message: str
    dial_number: str | None = None
