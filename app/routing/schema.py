"""What a routes file may say: the pydantic models of its YAML, with the checks of each field.

Keys under `agent:` and `inline:` are Ultravox's own call fields, spelled as in its API
(camelCase); the bridge's own keys (`number`, `caller_prefix`, `fallback`, ...) are snake_case.
"""

import re
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from app.phone import is_ascii_digits, written_e164
from app.routing.placeholders import CALL_PLACEHOLDERS, compile_value
from app.routing.transfer import TransferSpec

# Inline fields whose text may hold placeholders.
TEMPLATED_FIELDS = ("systemPrompt", "timeExceededMessage", "initialMessages", "inactivityMessages")
# Fields the bridge sets itself, whatever the route says.
BRIDGE_FIELDS = {
    "medium": "is set by the bridge from the provider that sent the call; remove it",
    "firstSpeaker": "is deprecated and set by the bridge; use firstSpeakerSettings instead",
}


def _duration(value: Any) -> Any:
    text = value if isinstance(value, str) else ""
    if not text.endswith("s") or not is_ascii_digits(text.removesuffix("s").replace(".", "", 1)):
        raise ValueError(f'must be a duration in seconds such as "600s", not {value!r}')
    return value


def _metadata_keys(value: dict[str, str]) -> dict[str, str]:
    reserved = sorted(key for key in value if key.startswith("ultravox."))
    if reserved:
        raise ValueError(f"keys must not start with 'ultravox.' ({', '.join(reserved)})")
    return value


Duration = Annotated[str, BeforeValidator(_duration)]
Metadata = Annotated[dict[str, str], AfterValidator(_metadata_keys)]
JsonObject = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentCall(_Strict):
    """`agent:` a saved Ultravox agent and the per-call fields an agent call accepts."""

    id: str = Field(min_length=1)
    templateContext: JsonObject | None = None
    voice: str | None = None
    maxDuration: Duration | None = None
    joinTimeout: Duration | None = None
    recordingEnabled: bool | None = None
    metadata: Metadata | None = None
    initialMessages: list[JsonObject] | None = None
    firstSpeakerSettings: JsonObject | None = None
    callbacks: JsonObject | None = None

    @field_validator("templateContext")
    @classmethod
    def _bridge_variables(cls, value: JsonObject | None) -> JsonObject | None:
        taken = sorted(set(CALL_PLACEHOLDERS) & (value or {}).keys())
        if taken:
            verb = "is" if len(taken) == 1 else "are"
            raise ValueError(f"{', '.join(taken)} {verb} filled by the bridge for each call")
        return value


class InlineCall(_Strict):
    """`inline:` a call defined here, with any Ultravox call field."""

    systemPrompt: str | None = None
    model: str | None = None
    voice: str | None = None
    externalVoice: JsonObject | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    languageHint: str | None = None
    initialMessages: list[JsonObject] | None = None
    joinTimeout: Duration | None = None
    maxDuration: Duration | None = None
    timeExceededMessage: str | None = None
    inactivityMessages: list[JsonObject] | None = None
    selectedTools: list[JsonObject] | None = None
    recordingEnabled: bool | None = None
    firstSpeakerSettings: JsonObject | None = None
    initialOutputMedium: str | None = None
    vadSettings: JsonObject | None = None
    metadata: Metadata | None = None
    initialState: JsonObject | None = None
    callbacks: JsonObject | None = None
    dataConnection: JsonObject | None = None
    transcriptOptional: bool | None = None

    @field_validator(*TEMPLATED_FIELDS)
    @classmethod
    def _known_placeholders(cls, value: Any) -> Any:
        compile_value(value)
        return value


class Fallback(_Strict):
    """`fallback:` what callers hear when Ultravox cannot take the call. A key left out keeps
    the FALLBACK_* setting; `dial_number: null` hangs up instead of dialling."""

    message: str | None = Field(default=None, min_length=1)
    dial_number: str | None = None

    @field_validator("dial_number", mode="before")
    @classmethod
    def _quoted_dial_number(cls, value: Any) -> Any:
        return _refuse_unquoted(value)

    @field_validator("dial_number")
    @classmethod
    def _dial_number(cls, value: str | None) -> str | None:
        return None if value is None else written_e164(value)


# A route's name in URLs (/talk/<name>) and a context field's name in templates.
WEB_ROUTE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CONTEXT_FIELD = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class WebOptions(_Strict):
    """`web:` the route also answers browsers (`POST /web/calls`, the page `/talk/<name>`).
    `web: true` takes the route as it is; a mapping may change what a browser's call gets."""

    systemPrompt: str | None = Field(default=None, min_length=1)
    greeting: str | None = Field(default=None, min_length=1, max_length=2000)
    context: list[Annotated[str, Field(pattern=CONTEXT_FIELD)]] = Field(
        default_factory=list, max_length=20
    )
    maxDuration: Duration | None = None

    @field_validator("context")
    @classmethod
    def _not_the_bridges(cls, value: list[str]) -> list[str]:
        taken = sorted(set(value) & set(CALL_PLACEHOLDERS))
        if taken:
            raise ValueError(f"{', '.join(taken)} are filled by the bridge, not by a web page")
        return value


def _web(value: Any) -> Any:
    # `web: true` is the route as it is; `web: false` (or no key) keeps browsers out.
    if value is True:
        return WebOptions()
    return None if value is False else value


class RouteTarget(_Strict):
    """What a route does (exactly one of agent, inline, reject), its fallback, whether browsers
    may start its calls, and its live-call limit with the answer for calls over it (`overflow`:
    `fallback`, the default; `reject`; or a message and dial number of its own, like
    `fallback:`)."""

    agent: AgentCall | None = None
    inline: InlineCall | None = None
    reject: bool = False
    fallback: Fallback | None = None
    web: Annotated[WebOptions | None, BeforeValidator(_web)] = None
    transfer: TransferSpec | None = None
    max_concurrent_calls: int | None = Field(default=None, ge=1)
    overflow: Literal["fallback", "reject"] | Fallback = "fallback"


class DefaultRoute(RouteTarget):
    """`default:` the route for calls no other route takes."""

    name: str = Field(default="default", min_length=1)


class NumberRoute(RouteTarget):
    """One entry of `routes:`: which calls it takes, and what it does with them."""

    name: str | None = Field(default=None, min_length=1)
    number: list[str]
    provider: str | None = None
    caller_prefix: str | None = None

    @field_validator("number", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        for number in value if isinstance(value, list) else [value]:
            _refuse_unquoted(number)
        return [value] if isinstance(value, str) else value

    @field_validator("number")
    @classmethod
    def _e164(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one phone number")
        return [written_e164(number) for number in value]

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The registered providers, given by load_routing_table from the settings.
        known: Collection[str] = (info.context or {}).get("providers", ())
        if value is not None and value not in known:
            raise ValueError(f"{value!r} is not a provider; use one of {', '.join(known)}")
        return value

    @field_validator("caller_prefix", mode="before")
    @classmethod
    def _quoted_prefix(cls, value: Any) -> Any:
        return _refuse_unquoted(value)

    @field_validator("caller_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        compact = "".join(ch for ch in value if ch not in " -().")
        if not (compact.startswith("+") and is_ascii_digits(compact[1:]) and len(compact) <= 16):
            raise ValueError(
                f"{value!r} must be the start of an E.164 number: + then digits, such as +1500"
            )
        return compact


class RoutesFile(_Strict):
    routes: list[NumberRoute] = Field(default_factory=list)
    default: DefaultRoute | None = None


def _refuse_unquoted(value: Any) -> Any:
    # YAML reads an unquoted +15005550100 as the integer 15005550100: the + is already lost.
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f'{value} must be quoted, such as "+{value}": unquoted, YAML reads a phone number '
            "as an integer and drops its +"
        )
    return value
