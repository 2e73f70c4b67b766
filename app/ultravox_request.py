"""The Ultravox call request for an inbound call: the route's fields plus what the bridge adds."""

from typing import Any

from app.calltypes import InboundCall
from app.routing import AgentTarget, InlineTarget
from app.ultravox import UltravoxCall, UltravoxClient


def call_metadata(call: InboundCall) -> dict[str, str]:
    """Metadata attached to every call so it can be traced back to the phone call."""
    return {
        "provider": call.provider,
        "providerCallId": call.call_id,
        "callerNumber": call.from_number,
        "calledNumber": call.to_number,
    }


def template_context(call: InboundCall) -> dict[str, str]:
    """Variables an agent's prompt can use as {{callerNumber}}, {{calledNumber}}, {{provider}};
    the bridge fills the same placeholders in inline routes' text (app/routing/placeholders.py)."""
    return {
        "callerNumber": call.from_number,
        "calledNumber": call.to_number,
        "provider": call.provider,
    }


def build_call_body(
    target: AgentTarget | InlineTarget, call: InboundCall, medium: dict[str, Any]
) -> dict[str, Any]:
    """The JSON body for `POST /calls` or `POST /agents/{id}/calls`."""
    body: dict[str, Any] = {"firstSpeakerSettings": {"agent": {}}, **target.call_fields}
    user_metadata = body.get("metadata") or {}
    body["metadata"] = {**{k: str(v) for k, v in user_metadata.items()}, **call_metadata(call)}
    body["medium"] = medium
    if isinstance(target, InlineTarget) and target.templated:
        values = template_context(call)
        body.update({key: template.fill(values) for key, template in target.templated.items()})
    if isinstance(target, AgentTarget):
        body["templateContext"] = {
            **(body.get("templateContext") or {}),
            **target.template_context,
            **template_context(call),
        }
    return body


async def create_call(
    ultravox: UltravoxClient, target: AgentTarget | InlineTarget, body: dict[str, Any]
) -> UltravoxCall:
    """Start the Ultravox call `body` describes: from the target's saved agent, or inline."""
    if isinstance(target, AgentTarget):
        return await ultravox.create_agent_call(target.agent_id, body)
    return await ultravox.create_call(body)
