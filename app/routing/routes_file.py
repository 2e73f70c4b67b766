"""The routes file (`ROUTES_FILE`): YAML read once, validated with pydantic, and turned into a
`RoutingTable`. Every mistake is reported as one line naming the file, the route and the field.

Keys under `agent:` and `inline:` are Ultravox's own call fields, spelled as in its API
(camelCase); the bridge's own keys (`number`, `caller_prefix`, `fallback`, ...) are snake_case.
"""

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from app.phone import to_e164
from app.providers import ADAPTERS
from app.providers.base import FallbackPlan
from app.routing.placeholders import CALL_PLACEHOLDERS, compile_value
from app.routing.table import (
    AgentTarget,
    InlineTarget,
    RejectTarget,
    Route,
    RoutingTable,
    Rule,
    Target,
)
from app.settings import E164, ConfigError, Settings

PROVIDER_NAMES = tuple(adapter.name for adapter in ADAPTERS)
# PyYAML's safe loader, its parser in C when libyaml is there (three times faster).
SAFE_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

# Inline fields whose text may hold placeholders.
TEMPLATED_FIELDS = ("systemPrompt", "timeExceededMessage", "initialMessages", "inactivityMessages")
# Fields the bridge sets itself, whatever the route says.
BRIDGE_FIELDS = {
    "medium": "is set by the bridge from the provider that sent the call; remove it",
    "firstSpeaker": "is deprecated and set by the bridge; use firstSpeakerSettings instead",
}


class RoutesFileError(ConfigError):
    """The routes file cannot be used; one line per mistake, each naming file, route and field."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def _duration(value: Any) -> Any:
    text = value if isinstance(value, str) else ""
    if not text.endswith("s") or not text.removesuffix("s").replace(".", "", 1).isdigit():
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
        return None if value is None else e164(value)


class RouteTarget(_Strict):
    """What a route does (exactly one of agent, inline, reject) and its fallback."""

    agent: AgentCall | None = None
    inline: InlineCall | None = None
    reject: bool = False
    fallback: Fallback | None = None


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
        return [e164(number) for number in value]

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None, info: ValidationInfo) -> str | None:
        known: Collection[str] = (info.context or {}).get("providers", PROVIDER_NAMES)
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
        if not (compact.startswith("+") and compact[1:].isdigit() and len(compact) <= 16):
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


def e164(number: str) -> str:
    """A phone number written in the file, in E.164 form; spaces, dashes and brackets allowed,
    the + and country code required (a number without them would be guessed, not read)."""
    normalised = to_e164(number)
    if not number.strip().startswith("+") or not E164.match(normalised):
        raise ValueError(
            f"{number!r} is not a phone number in E.164 form (+, country code, number, "
            "such as +15005550100)"
        )
    return normalised


def load_routing_table(
    path: Path, settings: Settings, providers: Collection[str] = PROVIDER_NAMES
) -> RoutingTable:
    """The routing table `path` describes; `RoutesFileError` for anything wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoutesFileError([f"{path}: cannot be read ({_reason(exc)})"]) from None
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise RoutesFileError([f"{path}: is not valid YAML ({_yaml_problem(exc)})"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RoutesFileError([f"{path}: must be a mapping with `routes:` and/or `default:`"])
    try:
        spec = RoutesFile.model_validate(data, context={"providers": tuple(providers)})
    except ValidationError as exc:
        raise RoutesFileError([_error_line(path, error, data) for error in exc.errors()]) from None
    return _build_table(path, spec, settings)


def _build_table(path: Path, spec: RoutesFile, settings: Settings) -> RoutingTable:
    problems: list[str] = []
    rules: list[Rule] = []
    names: dict[str, str] = {}
    for index, entry in enumerate(spec.routes):
        label = _label(index, entry.name)
        name = entry.name or f"routes[{index}]"
        if name in names:
            problems.append(f"{path}: {label}: name: {name!r} is already used by {names[name]}")
        names.setdefault(name, label)
        route = _route(path, label, name, entry, settings, problems)
        rules.append(Rule(tuple(entry.number), route, entry.provider, entry.caller_prefix))
    problems.extend(_unreachable(path, spec.routes))
    default = None
    if spec.default is not None:
        default = _route(path, "default", spec.default.name, spec.default, settings, problems)
    if not rules and default is None:
        problems.append(f"{path}: has no routes and no default: every call would be rejected")
    if problems:
        raise RoutesFileError(problems)
    return RoutingTable(default=default, rules=rules)


def _route(
    path: Path, label: str, name: str, spec: RouteTarget, settings: Settings, problems: list[str]
) -> Route:
    chosen = [key for key in ("agent", "inline", "reject") if getattr(spec, key)]
    target: Target = RejectTarget()
    if len(chosen) != 1:
        found = " and ".join(chosen) if chosen else "none"
        problems.append(
            f"{path}: {label}: set exactly one of agent, inline or reject (found {found})"
        )
    elif spec.agent is not None:
        fields = _given(spec.agent, exclude={"id", "templateContext"})
        target = AgentTarget(spec.agent.id, dict(spec.agent.templateContext or {}), fields)
    elif spec.inline is not None:
        fields = _given(spec.inline)
        templated = {
            key: template
            for key in TEMPLATED_FIELDS
            if key in fields and (template := compile_value(fields[key])) is not None
        }
        target = InlineTarget(fields, templated)
    return Route(name, target, _fallback(spec.fallback, settings))


def _given(call: BaseModel, exclude: set[str] | None = None) -> dict[str, Any]:
    """The call fields the file sets, as written; `key: null` counts as not set."""
    fields = call.model_dump(exclude_unset=True, exclude=exclude)
    return {key: value for key, value in fields.items() if value is not None}


def _fallback(spec: Fallback | None, settings: Settings) -> FallbackPlan:
    plan = FallbackPlan(settings.fallback_message, settings.fallback_dial_number)
    if spec is None:
        return plan
    return FallbackPlan(
        spec.message or plan.message,
        spec.dial_number if "dial_number" in spec.model_fields_set else plan.dial_number,
    )


def _unreachable(path: Path, routes: Sequence[NumberRoute]) -> list[str]:
    """Routes that could never match because an earlier one takes all their calls."""
    problems: list[str] = []
    seen: dict[str, list[tuple[int, NumberRoute]]] = {}
    for index, entry in enumerate(routes):
        for number in dict.fromkeys(entry.number):
            for earlier_index, earlier in seen.get(number, []):
                if _covers(earlier, entry):
                    problems.append(
                        f"{path}: {_label(index, entry.name)}: number: {number} "
                        f"{_shadowed(earlier, entry, _label(earlier_index, earlier.name))}"
                    )
                    break
            seen.setdefault(number, []).append((index, entry))
        for number in {number for number in entry.number if entry.number.count(number) > 1}:
            problems.append(
                f"{path}: {_label(index, entry.name)}: number: {number} is listed twice"
            )
    return problems


def _covers(earlier: NumberRoute, later: NumberRoute) -> bool:
    """Whether `earlier` takes every call to a shared number that `later` would take."""
    return earlier.provider in (None, later.provider) and (later.caller_prefix or "").startswith(
        earlier.caller_prefix or ""
    )


def _shadowed(earlier: NumberRoute, later: NumberRoute, earlier_label: str) -> str:
    if (earlier.provider, earlier.caller_prefix) == (later.provider, later.caller_prefix):
        return f"is already routed by {earlier_label} for the same provider and callers"
    return (
        f"is already routed by {earlier_label}, which takes every call this route would "
        "(any provider or a shorter caller prefix): put the narrower route first"
    )


def _label(index: int, name: str | None) -> str:
    return f"routes[{index}] ({name})" if name else f"routes[{index}]"


def _error_line(path: Path, error: ErrorDetails, data: dict[str, Any]) -> str:
    loc = error["loc"]
    where = ""
    if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
        entries = data.get("routes")
        entry = entries[loc[1]] if isinstance(entries, list) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where, loc = _label(loc[1], name if isinstance(name, str) else None), loc[2:]
    elif loc and loc[0] == "default":
        where, loc = "default", loc[1:]
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    return ": ".join(part for part in (str(path), where, field, _message(error)) if part)


def _message(error: ErrorDetails) -> str:
    loc = error["loc"]
    key = str(loc[-1]) if loc else ""
    parent = str(loc[-2]) if len(loc) >= 2 else ""
    if error["type"] == "extra_forbidden":
        if parent in ("agent", "inline") and key in BRIDGE_FIELDS:
            return BRIDGE_FIELDS[key]
        if parent == "agent" and key in InlineCall.model_fields:
            return (
                f"an agent call cannot set {key}: change it on the agent in Ultravox, or make "
                "this an inline route"
            )
        models: dict[str, type[BaseModel]] = {
            "agent": AgentCall,
            "inline": InlineCall,
            "fallback": Fallback,
            "default": DefaultRoute,
        }
        allowed = models.get(parent)
        if allowed is None:
            allowed = NumberRoute if parent.isdigit() else RoutesFile if len(loc) == 1 else None
        known = f"; expected one of {', '.join(allowed.model_fields)}" if allowed else ""
        return f"unknown field{known}"
    if error["type"] == "missing":
        return "is required"
    return error["msg"].removeprefix("Value error, ")


def _reason(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return str(problem)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
