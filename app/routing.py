"""Which Ultravox agent takes a call: routes, what each one does, and how one is chosen."""

from dataclasses import dataclass, field
from typing import Any

from app.providers.base import FallbackPlan, InboundCall
from app.settings import Settings


@dataclass(frozen=True)
class AgentTarget:
    """Start the call from a saved Ultravox agent, with extra prompt variables and call fields."""

    agent_id: str
    template_context: dict[str, Any] = field(default_factory=dict)
    call_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InlineTarget:
    """Start the call from an inline definition: any Ultravox call fields."""

    call_fields: dict[str, Any]


@dataclass(frozen=True)
class RejectTarget:
    """Refuse the call with the provider's reject verb."""


Target = AgentTarget | InlineTarget | RejectTarget


@dataclass(frozen=True)
class Route:
    name: str
    target: Target
    fallback: FallbackPlan


@dataclass(frozen=True)
class RoutingTable:
    """The routes in force. Without a routes file it holds one default route."""

    default: Route | None

    def resolve(self, call: InboundCall) -> Route | None:
        return self.default

    def fallback_for(self, call: InboundCall | None) -> FallbackPlan | None:
        route = self.resolve(call) if call is not None else self.default
        return route.fallback if route is not None else None


def default_route(settings: Settings) -> Route:
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


def table_from_settings(settings: Settings) -> RoutingTable:
    return RoutingTable(default=default_route(settings))
