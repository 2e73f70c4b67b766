"""Creating the Ultravox call when a platform's socket, not a webhook, announces the call."""

import logging
import time
from typing import Any

from app.calltypes import InboundCall
from app.inbound import Bridge
from app.records.changes import ANSWERED, FALLBACK, REFUSED_OVER_LIMIT, REJECTED
from app.records.lifecycle import Decision, lifetime_seconds
from app.routing import RejectTarget
from app.ultravox import UltravoxCall, UltravoxError
from app.ultravox_request import build_call_body, create_call

logger = logging.getLogger("app.relay")


async def create_relayed_call(
    bridge: Bridge, call: InboundCall, medium: dict[str, Any]
) -> UltravoxCall | None:
    """The route's Ultravox call for `call`, or None when the route rejects it, the live-call
    limit is reached or Ultravox cannot take it (the caller's platform then plays its own
    fallback). The outcome goes to the call's record."""
    received = time.time()
    fields: dict[str, Any] = {
        "provider": call.provider,
        "call_id": call.call_id,
        "from": call.from_number,
        "to": call.to_number,
    }
    route = bridge.routing.resolve(call)
    fields["route"] = route.name if route else None
    created: UltravoxCall | None = None
    lifetime: float | None = None
    if route is None or isinstance(route.target, RejectTarget):
        outcome = REJECTED
    else:
        body = build_call_body(route.target, call, medium)
        lifetime = lifetime_seconds(body)
        record_id = bridge.lifecycle.record_id(call)
        if not await bridge.lifecycle.admit(
            record_id, route.name, route.max_concurrent_calls, lifetime
        ):
            outcome, fields["reason"] = REFUSED_OVER_LIMIT, "over the live-call limit"
        else:
            try:
                created = await create_call(bridge.ultravox, route.target, body)
                outcome = ANSWERED
            except UltravoxError as exc:
                fields.update(ultravox_error=type(exc).__name__, reason=str(exc)[:300])
                await bridge.lifecycle.release(record_id, route.name)
                outcome = FALLBACK
    ultravox_call_id = created.call_id if created is not None else None
    level = logging.INFO if created is not None else logging.WARNING
    event = {ANSWERED: "media.answered", REJECTED: "media.rejected"}.get(outcome, "media.fallback")
    logger.log(level, event, extra={"fields": {**fields, "ultravox_call_id": ultravox_call_id}})
    bridge.lifecycle.decided(
        Decision(
            call,
            outcome,
            received,
            route=fields["route"],
            ultravox_call_id=ultravox_call_id,
            lifetime_seconds=lifetime if created is not None else None,
            reason=fields.get("reason"),
        )
    )
    return created
