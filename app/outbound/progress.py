"""What placing one outbound call records, whatever the outcome: how far it got, and the
record's outcome for each reason it was not placed."""

from dataclasses import dataclass

from app.calltypes import InboundCall
from app.outbound.errors import (
    DialerNotConfigured,
    InvalidOutboundRequest,
    OutboundError,
    OverCallLimit,
    ProviderNoAnswer,
    RouteRefusesCalls,
)
from app.outbound.request import OutboundCallRequest
from app.records.changes import ANSWERED, FAILED, REFUSED_OVER_LIMIT, REJECTED
from app.records.lifecycle import Decision


@dataclass
class Progress:
    """How far placing one call got, for its record whatever the outcome."""

    record_id: str
    received_at: float
    from_number: str | None = None
    route: str | None = None
    lifetime_seconds: float | None = None

    def decision(
        self,
        request: OutboundCallRequest,
        outcome: str,
        reason: str | None = None,
        ultravox_call_id: str | None = None,
        provider_call_id: str = "",
    ) -> Decision:
        call = InboundCall(request.provider, provider_call_id, self.from_number or "", request.to)
        return Decision(
            call,
            outcome,
            self.received_at,
            direction="outbound",
            route=self.route,
            ultravox_call_id=ultravox_call_id,
            lifetime_seconds=self.lifetime_seconds if outcome == ANSWERED else None,
            reason=reason,
            record_id=self.record_id,
        )


def recorded_outcome(exc: OutboundError) -> str | None:
    """The record's outcome for a call that was not placed; None: a bad request, no call."""
    if isinstance(exc, InvalidOutboundRequest | DialerNotConfigured):
        return None
    if isinstance(exc, OverCallLimit):
        return REFUSED_OVER_LIMIT
    if isinstance(exc, RouteRefusesCalls):
        return REJECTED
    # The provider's answer was lost: it may be dialling; Ultravox's events will tell.
    return ANSWERED if isinstance(exc, ProviderNoAnswer) else FAILED
