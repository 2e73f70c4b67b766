"""Creating the Ultravox call when a platform's socket, not a webhook, announces the call."""

import logging
from typing import Any

from app.calltypes import InboundCall
from app.inbound import Bridge
from app.routing import RejectTarget
from app.ultravox import UltravoxCall, UltravoxError
from app.ultravox_request import build_call_body, create_call

logger = logging.getLogger("app.relay")


async def create_relayed_call(
    bridge: Bridge, call: InboundCall, medium: dict[str, Any]
) -> UltravoxCall | None:
    """The route's Ultravox call for `call`, or None when the route rejects it or Ultravox
    cannot take it (the caller's platform then plays its own fallback)."""
    fields: dict[str, Any] = {
        "provider": call.provider,
        "call_id": call.call_id,
        "from": call.from_number,
        "to": call.to_number,
    }
    route = bridge.routing.resolve(call)
    if route is None or isinstance(route.target, RejectTarget):
        fields["route"] = route.name if route else None
        logger.warning("media.rejected", extra={"fields": fields})
        return None
    fields["route"] = route.name
    body = build_call_body(route.target, call, medium)
    try:
        created = await create_call(bridge.ultravox, route.target, body)
    except UltravoxError as exc:
        fields.update(ultravox_error=type(exc).__name__, reason=str(exc)[:300])
        logger.warning("media.fallback", extra={"fields": fields})
        return None
    logger.info("media.answered", extra={"fields": {**fields, "ultravox_call_id": created.call_id}})
    return created
