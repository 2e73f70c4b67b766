"""The provider-adapter interface: what every telephony provider module implements.

An adapter owns everything specific to its provider: reading and verifying its webhook, the
Ultravox medium it needs, and the answers it sends back (stream, fallback, reject). The routes
and the call logic only ever talk to this interface.
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from app.phone import to_e164
from app.settings import Settings
from app.store import Store
from app.ultravox import UltravoxCall


class WebhookError(Exception):
    """A webhook the service refuses; `status_code` is the HTTP answer."""

    status_code = 400


class MalformedWebhook(WebhookError):
    """The webhook lacks a field the service needs, or cannot be decoded."""

    status_code = 400


class SignatureError(WebhookError):
    """The webhook's signature is missing, wrong or stale: it did not come from the provider."""

    status_code = 403


class NoStatusCallbacks(WebhookError):
    """The provider has no status callbacks on this service."""

    status_code = 404


class ProviderNotConfigured(WebhookError):
    """Signatures are required but no secret is configured for this provider."""

    status_code = 503


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request as a provider sent it, independent of the web framework.

    `url` is the URL the provider requested (rebuilt from PUBLIC_BASE_URL when set), which is
    what providers sign.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    body: bytes
    received_at: float

    def form(self) -> list[tuple[str, str]]:
        """The form-encoded body's fields, in order (empty for GET)."""
        if not self.body:
            return []
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedWebhook("the body is not UTF-8") from None
        return parse_qsl(text, keep_blank_values=True)

    def params(self) -> list[tuple[str, str]]:
        """The webhook's fields: the form body for POST, the query string for GET."""
        return self.form() if self.method == "POST" else list(self.query)


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


def seconds_field(params: Mapping[str, str], name: str) -> float | None:
    """A whole or decimal number of seconds from a status report, None when absent or odd."""
    value = params.get(name, "").strip()
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 10**7 else None


@dataclass(frozen=True)
class Answer:
    """The body and media type the provider receives in reply to its webhook."""

    body: bytes
    media_type: str


@dataclass(frozen=True)
class FallbackPlan:
    """What a caller hears when no agent can take the call: a message, then a dial or hang-up."""

    message: str
    dial_number: str | None = None


def single_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each field's value. Providers send each field once; a repeated one is refused, because a
    signature check and the reading of the call could otherwise take different values."""
    values: dict[str, str] = {}
    for name, value in params:
        if name in values:
            raise MalformedWebhook(f"field {name} is repeated")
        values[name] = value
    return values


def inbound_call(
    provider: str,
    params: Mapping[str, str],
    call_id_field: str,
    from_field: str,
    to_field: str,
    call_id_form: re.Pattern[str] | None = None,
) -> InboundCall:
    """The normalised call from a webhook's fields; `MalformedWebhook` if any is missing, or if
    the call id is not of the provider's form (`call_id_form`, where it is documented)."""
    call_id, from_number, to_number = require_fields(params, call_id_field, from_field, to_field)
    if call_id_form is not None and not call_id_form.fullmatch(call_id):
        raise MalformedWebhook(f"{call_id_field} is not a {provider} call id")
    return InboundCall(provider, call_id, to_e164(from_number), to_e164(to_number), params)


def require_fields(params: Mapping[str, str], *names: str) -> list[str]:
    """The values of `names`, or a `MalformedWebhook` naming the missing ones."""
    missing = [name for name in names if not params.get(name, "").strip()]
    if missing:
        raise MalformedWebhook(f"missing field(s): {', '.join(missing)}")
    return [params[name].strip() for name in names]


class ProviderAdapter(ABC):
    """One telephony provider. Subclasses are built once at start-up from the settings and must
    fail fast there, not per call, when their configuration is unusable."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.verify_signatures = settings.verify_signatures

    @classmethod
    def build(cls, settings: Settings, store: Store) -> "ProviderAdapter":
        """The adapter for the application. Adapters that keep call sessions between the
        webhook and the media socket (relayed providers) override it to take the shared store."""
        return cls(settings)

    @property
    @abstractmethod
    def has_secrets(self) -> bool:
        """Whether a secret to verify this provider's signatures is configured."""

    @property
    def ready(self) -> bool:
        """Whether this provider's webhooks can be served."""
        return self.has_secrets or not self.verify_signatures

    def check(self, request: WebhookRequest) -> None:
        """Refuse the request unless it may be served: provider configured, signature valid."""
        if not self.verify_signatures:
            return
        if not self.has_secrets:
            raise ProviderNotConfigured(f"no {self.name} secret is configured")
        self.verify(request)

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Raise `SignatureError` unless the provider signed this request."""

    @abstractmethod
    def parse(self, request: WebhookRequest) -> InboundCall:
        """Read the incoming call from a verified webhook; `MalformedWebhook` if fields lack."""

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        """Read a verified status callback (`/{name}/status`): the call's progress. Providers
        whose calls report no status here keep this refusal."""
        raise NoStatusCallbacks(f"{self.name} has no status callbacks on this service")

    @abstractmethod
    def medium(self) -> dict[str, Any]:
        """The Ultravox `medium` for calls of this provider."""

    @abstractmethod
    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        """The answer that connects the caller's audio to the created Ultravox call.

        Async so that an adapter whose media the service relays itself can first register the
        call's session (for example in a shared store) before answering.
        """

    @abstractmethod
    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        """Speak the fallback message, then dial the fallback number or hang up."""

    @abstractmethod
    def reject_answer(self) -> Answer:
        """Refuse the call without answering it (not billed where the provider allows)."""
