"""Which Ultravox call an outbound call starts: the route for our number, or the route or agent
the request names."""

import dataclasses

from app.calltypes import InboundCall
from app.outbound.errors import InvalidOutboundRequest, RouteRefusesCalls
from app.outbound.request import OutboundCallRequest
from app.routing import AgentTarget, InlineTarget, RejectTarget, Route, RoutingTable
from app.ultravox import AGENT_CALL_FIELDS


def outbound_route(
    routing: RoutingTable, call: InboundCall, request: OutboundCallRequest
) -> Route | None:
    """The route for our number (`call.to_number`), or the route the request names."""
    return routing.resolve(call) if request.route is None else named_route(routing, request.route)


def outbound_target(
    routing: RoutingTable, call: InboundCall, request: OutboundCallRequest
) -> AgentTarget | InlineTarget:
    """The Ultravox call definition: the route for our number (`call.to_number`) or the route
    the request names, or the agent it names with that route's call fields; the request's
    templateContext fills the agent's prompt."""
    route = outbound_route(routing, call, request)
    target: AgentTarget | InlineTarget | RejectTarget
    if request.agent_id:
        fields = (
            {}
            if route is None or isinstance(route.target, RejectTarget)
            else route.target.call_fields
        )
        # The route's fields an agent call takes; the agent has its own prompt, model, ...
        allowed = {k: v for k, v in fields.items() if k in AGENT_CALL_FIELDS}
        target = AgentTarget(agent_id=request.agent_id, call_fields=allowed)
    elif route is None:
        raise InvalidOutboundRequest(f"no route for the caller number {call.to_number}")
    else:
        target = route.target
    if isinstance(target, RejectTarget):
        raise RouteRefusesCalls(f"the route for {call.to_number} is set to reject calls")
    if request.template_context:
        if not isinstance(target, AgentTarget):
            raise InvalidOutboundRequest("templateContext needs an agent: give agentId")
        context = {**target.template_context, **request.template_context}
        target = dataclasses.replace(target, template_context=context)
    return target


def named_route(routing: RoutingTable, name: str) -> Route:
    """The route called `name` in the routing table in force."""
    route = routing.named(name)
    if route is None:
        raise InvalidOutboundRequest(f"no route named {name!r}")
    return route
