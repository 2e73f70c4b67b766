"""The routes file (`ROUTES_FILE`): YAML read with a safe loader, validated against
`app.routing.schema`, and turned into a `RoutingTable`. Every mistake is reported as one line
naming the file, the route and the field."""

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from app.calltypes import FallbackPlan
from app.routing.placeholders import compile_value
from app.routing.schema import (
    BRIDGE_FIELDS,
    TEMPLATED_FIELDS,
    AgentCall,
    DefaultRoute,
    Fallback,
    InlineCall,
    NumberRoute,
    RoutesFile,
    RouteTarget,
    WebOptions,
)
from app.routing.table import (
    AgentTarget,
    InlineTarget,
    RejectTarget,
    Route,
    RoutingTable,
    Rule,
    Target,
)
from app.routing.transfer import HoursSpec, TransferSpec
from app.routing.web import web_access
from app.settings import ConfigError, ServiceSettings

# PyYAML's safe loader, its parser in C when libyaml is there (three times faster).
SAFE_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class RoutesFileError(ConfigError):
    """The routes file cannot be used; one line per mistake, each naming file, route and field."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))


def load_routing_table(
    path: Path, settings: ServiceSettings, providers: Collection[str] | None = None
) -> RoutingTable:
    """The routing table `path` describes; `RoutesFileError` for anything wrong with it. A route
    may name any of `providers`, by default the providers the settings were composed with."""
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
    known = settings.provider_names if providers is None else providers
    try:
        spec = RoutesFile.model_validate(data, context={"providers": tuple(known)})
    except ValidationError as exc:
        raise RoutesFileError([_error_line(path, error, data) for error in exc.errors()]) from None
    return _build_table(path, spec, settings)


def _build_table(path: Path, spec: RoutesFile, settings: ServiceSettings) -> RoutingTable:
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
    path: Path,
    label: str,
    name: str,
    spec: RouteTarget,
    settings: ServiceSettings,
    problems: list[str],
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
    if isinstance(target, AgentTarget):
        _check_json(
            path,
            label,
            {**target.call_fields, "templateContext": target.template_context},
            problems,
        )
    elif isinstance(target, InlineTarget):
        _check_json(path, label, target.call_fields, problems)
    web = None
    if spec.web is not None and len(chosen) == 1:
        try:
            web = web_access(name, spec.web, target)
        except ValueError as exc:
            problems.append(f"{path}: {label}: web: {exc}")
    transfer = None
    if spec.transfer is not None:
        if isinstance(target, InlineTarget):
            transfer = spec.transfer.build()
        else:
            problems.append(
                f"{path}: {label}: transfer: needs an inline route: the bridge adds its transfer "
                "tool to the call's selectedTools, which an agent call cannot set"
            )
    fallback = _fallback(spec.fallback, settings)
    overflow: FallbackPlan | RejectTarget | None = None
    if spec.overflow == "reject":
        overflow = RejectTarget()
    elif isinstance(spec.overflow, Fallback):
        overflow = _fallback(spec.overflow, settings)
    return Route(
        name,
        target,
        fallback,
        web=web,
        transfer=transfer,
        max_concurrent_calls=spec.max_concurrent_calls,
        overflow=overflow,
    )


def _check_json(path: Path, label: str, fields: dict[str, Any], problems: list[str]) -> None:
    """YAML reads some unquoted values (dates, times) as objects JSON has no form for: refuse
    them now, not when the first call's request body cannot be encoded."""
    for key, value in fields.items():
        try:
            json.dumps(value, allow_nan=False)  # as httpx encodes the request body
        except (TypeError, ValueError):
            problems.append(
                f"{path}: {label}: {key}: holds a value JSON cannot carry (YAML reads unquoted "
                "dates and times, .nan and .inf that way): quote it or write another value"
            )


def _given(call: BaseModel, exclude: set[str] | None = None) -> dict[str, Any]:
    """The call fields the file sets, as written; `key: null` counts as not set."""
    fields = call.model_dump(exclude_unset=True, exclude=exclude)
    return {key: value for key, value in fields.items() if value is not None}


def _fallback(spec: Fallback | None, settings: ServiceSettings) -> FallbackPlan:
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
            "transfer": TransferSpec,
            "hours": HoursSpec,
            "default": DefaultRoute,
            "web": WebOptions,
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
