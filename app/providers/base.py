"""The provider-adapter interface: what every telephony provider module implements.

An adapter owns everything specific to its provider: reading and verifying its webhook, the
Ultravox medium it needs, and the answers it sends back (stream, fallback, reject). The routes
and the call logic only ever talk to this interface.
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from app.calltypes import (
    Answer,
    CallStatus,
    FallbackPlan,
    InboundCall,
    MalformedWebhook,
    NoStatusCallbacks,
    ProviderNotConfigured,
    SignatureError,
    WebhookError,
    WebhookRequest,
)
from app.phone import to_e164
from app.settings import ServiceSettings
from app.store import Store
from app.ultravox import UltravoxCall


def seconds_field(params: Mapping[str, str], name: str) -> float | None:
    """A whole or decimal number of seconds from a status report, None when absent or odd."""
    value = params.get(name, "").strip()
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 10**7 else None


def single_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each field's value. Providers send each field once; a repeated one is refused, because a
    signature check and the reading of the call could otherwise take different values."""
    values: dict[str, str] = {}
    for name, value in params:
        if name in values:
            raise MalformedWebhook(f"field {name} is repeated")
        values[name] = value
    return values


def multi_map(params: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Each field's values by name, in order, built in one pass (linear in the field count)."""
    values: dict[str, list[str]] = {}
    for name, value in params:
        values.setdefault(name, []).append(value)
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
    """The values of `names`, or a `MalformedWebhook` naming the missing ones or refusing
    values with control characters: ids, numbers and statuses never hold them, and an id with
    a NUL would be cut short by SQLite's JSON functions, where the records look ids up."""
    missing = [name for name in names if not params.get(name, "").strip()]
    if missing:
        raise MalformedWebhook(f"missing field(s): {', '.join(missing)}")
    values = [params[name].strip() for name in names]
    if not all(map(str.isprintable, values)):
        unfit = [name for name, value in zip(names, values, strict=True) if not value.isprintable()]
        raise MalformedWebhook(f"{', '.join(unfit)} holds control characters")
    return values


class ProviderAdapter(ABC):
    """One telephony provider. Subclasses are built once at start-up from the settings and must
    fail fast there, not per call, when their configuration is unusable."""

    name: ClassVar[str]
    # The setting whose secret verifies this provider's webhooks.
    secret_setting: ClassVar[str]
    # Whether its webhook URL carries a key in its path (`/{name}/incoming/{key}`): for a
    # provider that signs nothing, a secret only it is given.
    takes_path_key: ClassVar[bool] = False

    def __init__(self, settings: ServiceSettings) -> None:
        self.verify_signatures = settings.verify_signatures

    @classmethod
    def build(cls, settings: ServiceSettings, store: Store) -> "ProviderAdapter":
        """The adapter for the application. Adapters that keep call sessions between the
        webhook and the media socket (relayed providers) override it to take the shared store."""
        return cls(settings)

    @classmethod
    def setup_hint(cls) -> str:
        """What to set so that this provider can take calls: its secret's setting, and what
        else its calls need."""
        return cls.secret_setting

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
        try:
            self.verify(request)
        except WebhookError:
            raise
        except Exception as exc:
            # A provider SDK that chokes on hostile input (a query of bytes that are not UTF-8, a
            # claim of the wrong type) has not vouched for the request: refuse it, never crash.
            raise SignatureError(
                f"the {self.name} signature could not be checked ({type(exc).__name__})"
            ) from None

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Raise `SignatureError` unless the provider signed this request."""

    @abstractmethod
    def parse(self, request: WebhookRequest) -> InboundCall:
        """Read the incoming call from a verified webhook; `MalformedWebhook` if fields lack."""

    def placed_call_reference(self, request: WebhookRequest) -> str | None:
        """Which placed (outbound) call an answer-URL request fetches the answer of: the
        reference in its URL (`/{name}/outbound/{reference}`). A provider that cannot be given
        a URL per call reads it from a field its request carries."""
        return request.path_key

    async def hold(self, request: WebhookRequest, call: InboundCall) -> None:
        """Refuse (`SignatureError`) a verified webhook whose signature does not cover `call`'s
        fields and already vouched for another call. Most providers sign the call's fields, so
        there is nothing to hold; one that does not keeps its signatures in the shared store."""
        return None

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
