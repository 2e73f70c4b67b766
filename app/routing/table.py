"""The routing table: routes, what each one does, and how the one for a call is found."""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.calltypes import FallbackPlan, InboundCall
from app.routing.placeholders import Template
from app.routing.transfer import TransferPlan
from app.settings import ServiceSettings


@dataclass(frozen=True)
class AgentTarget:
    """Start the call from a saved Ultravox agent, with extra prompt variables and call fields."""

    agent_id: str
    template_context: dict[str, Any] = field(default_factory=dict)
    call_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InlineTarget:
    """Start the call from an inline definition: any Ultravox call fields.

    `templated` holds the fields whose text has placeholders, compiled once at load time; their
    filled-in values replace `call_fields`' raw ones in each call's request."""

    call_fields: dict[str, Any]
    templated: Mapping[str, Template] = field(default_factory=dict)


@dataclass(frozen=True)
class RejectTarget:
    """Refuse the call with the provider's reject verb."""


Target = AgentTarget | InlineTarget | RejectTarget


@dataclass(frozen=True)
class WebAccess:
    """How a route answers browsers (`web:`): its target with the web changes applied, the
    text filled per web call (`templated`), the context fields a page may pass, and the
    route's own maxDuration for web calls (None: WEB_MAX_DURATION). Built in app/routing/web.py."""

    target: AgentTarget | InlineTarget
    templated: Mapping[str, Template] = field(default_factory=dict)
    context_fields: frozenset[str] = frozenset()
    max_duration: str | None = None


@dataclass(frozen=True)
class Route:
    """A route: what it does with a call, what callers hear when Ultravox cannot take it, and
    how many of its calls may be live at once (None: no route limit) with what the calls over
    that limit get (`overflow`: a message plan, or reject; None: the fallback)."""

    name: str
    target: Target
    fallback: FallbackPlan
    web: WebAccess | None = None
    transfer: TransferPlan | None = None  # the people the agent may hand the caller to
    max_concurrent_calls: int | None = None
    overflow: FallbackPlan | RejectTarget | None = None

    @property
    def overflow_answer(self) -> FallbackPlan | RejectTarget:
        return self.overflow if self.overflow is not None else self.fallback


@dataclass(frozen=True)
class Rule:
    """Which calls a route takes: calls to one of `numbers` (E.164), optionally only through
    one provider and only from callers whose number starts with `caller_prefix`."""

    numbers: tuple[str, ...]
    route: Route
    provider: str | None = None
    caller_prefix: str | None = None

    def takes(self, call: InboundCall) -> bool:
        return (self.provider is None or self.provider == call.provider) and (
            self.caller_prefix is None or call.from_number.startswith(self.caller_prefix)
        )


class RoutingTable:
    """The routes in force: rules tried in order for the called number, then `default`.
    Without a routes file it holds only the default route the environment describes.

    Rules are indexed by called number once, so resolving a call is one dict lookup and a
    check of the few rules for that number."""

    def __init__(self, default: Route | None = None, rules: Sequence[Rule] = ()) -> None:
        self.default = default
        self.rules = tuple(rules)
        by_number: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for number in rule.numbers:
                by_number.setdefault(number, []).append(rule)
        self._by_number = {number: tuple(found) for number, found in by_number.items()}

    def resolve(self, call: InboundCall) -> Route | None:
        for rule in self._by_number.get(call.to_number, ()):
            if rule.takes(call):
                return rule.route
        return self.default

    def named(self, name: str) -> Route | None:
        """The first route called `name`, for requests that pick a route by name (outbound
        calls). A route without a name is called `routes[i]`, by its position."""
        return next((route for *_, route in self.entries() if route.name == name), None)

    def web_route(self, name: str) -> Route | None:
        """The route called `name` if it is open to browsers (`web:`), else None."""
        route = self.named(name)
        return route if route is not None and route.web is not None else None

    def fallback_for(self, call: InboundCall | None) -> FallbackPlan | None:
        route = self.resolve(call) if call is not None else self.default
        return route.fallback if route is not None else None

    def entries(self) -> Iterator[tuple[str | None, str | None, str | None, Route]]:
        """(number, provider, caller prefix, route) in the order calls are matched; None is
        "any". The default route comes last."""
        for rule in self.rules:
            for number in rule.numbers:
                yield number, rule.provider, rule.caller_prefix, rule.route
        if self.default is not None:
            yield None, None, None, self.default


def describe_target(target: Target) -> str:
    """A target in a few words, for `check-config` and logs."""
    if isinstance(target, AgentTarget):
        return f"agent {target.agent_id}"
    if isinstance(target, InlineTarget):
        return "inline"
    return "reject"


def default_route(settings: ServiceSettings) -> Route:
    """The route the environment settings describe."""
    target: Target
    if settings.ultravox_agent_id:
        target = AgentTarget(
            agent_id=settings.ultravox_agent_id, call_fields=dict(settings.ultravox_call_options)
        )
    else:
        call_fields: dict[str, Any] = {"systemPrompt": settings.ultravox_system_prompt}
        if settings.ultravox_voice:
            call_fields["voice"] = settings.ultravox_voice
        if settings.ultravox_model:
            call_fields["model"] = settings.ultravox_model
        target = InlineTarget(call_fields={**call_fields, **settings.ultravox_call_options})
    fallback = FallbackPlan(settings.fallback_message, settings.fallback_dial_number)
    return Route(name="default", target=target, fallback=fallback)
