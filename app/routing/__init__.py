"""Which Ultravox call takes a phone call: the routing table, and where it comes from (the
routes file when ROUTES_FILE is set, the environment settings otherwise)."""

from app.routing.routes_file import RoutesFileError, load_routing_table
from app.routing.table import (
    AgentTarget,
    InlineTarget,
    RejectTarget,
    Route,
    RoutingTable,
    Rule,
    Target,
    default_route,
    describe_target,
)
from app.settings import ServiceSettings

__all__ = [
    "AgentTarget",
    "InlineTarget",
    "RejectTarget",
    "Route",
    "RoutesFileError",
    "RoutingTable",
    "Rule",
    "Target",
    "default_route",
    "describe_target",
    "load_routing_table",
    "table_from_settings",
    "unused_settings",
]

# The settings that describe the single call used when there is no routes file.
SINGLE_CALL_SETTINGS = (
    "ultravox_agent_id",
    "ultravox_system_prompt",
    "ultravox_voice",
    "ultravox_model",
    "ultravox_call_options",
)


def table_from_settings(settings: ServiceSettings) -> RoutingTable:
    """The routing table at start-up: the routes file's, or the environment's single route."""
    if settings.routes_file is not None:
        return load_routing_table(settings.routes_file, settings)
    return RoutingTable(default=default_route(settings))


def unused_settings(settings: ServiceSettings) -> list[str]:
    """Single-call settings that were set although ROUTES_FILE decides every call instead."""
    if settings.routes_file is None:
        return []
    return [name.upper() for name in SINGLE_CALL_SETTINGS if name in settings.model_fields_set]
