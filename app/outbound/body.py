"""The Ultravox request for an outbound call: the inbound body, with the callee speaking first."""

from typing import Any

from app.calltypes import InboundCall
from app.routing import AgentTarget, InlineTarget
from app.settings import ServiceSettings
from app.ultravox_request import build_call_body


def outbound_call_body(
    target: AgentTarget | InlineTarget,
    call: InboundCall,
    medium: dict[str, Any],
    settings: ServiceSettings,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """The Ultravox request for an outbound call: the inbound body, with the callee speaking
    first ("Hello?") and a joinTimeout long enough for the phone to ring."""
    body = build_call_body(target, call, medium)
    body["firstSpeakerSettings"] = {"user": {}}
    body["joinTimeout"] = settings.outbound_join_timeout
    bridge_metadata = {k: v for k, v in body["metadata"].items() if k != "providerCallId"}
    body["metadata"] = {**metadata, **bridge_metadata, "direction": "outbound"}
    return body
