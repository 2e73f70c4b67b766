"""The call flows' side of records and limits: what the inbound, outbound and relay flows call
when they decide a call's outcome (`decided`), before they create an Ultravox call (`admit`),
and when a relayed call ends (`relay_ended`). Nothing here waits for the database."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.calltypes import InboundCall
from app.logs import mask_phone
from app.records import metrics
from app.records.changes import (
    ANSWERED,
    DUPLICATE,
    FAILED,
    LATE_REPEAT,
    CallChange,
    TimelineEntry,
    new_record_id,
    record_id_for,
)
from app.records.service import CallRecords

# Ultravox's defaults for a call that does not set them.
DEFAULT_JOIN_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_DURATION_SECONDS = 3600.0
# Past the call's own limits, time for Ultravox's end report to arrive before the bridge
# closes the record itself.
END_REPORT_GRACE_SECONDS = 120.0


def _seconds(value: Any, default: float) -> float:
    text = str(value).strip() if value is not None else ""
    try:
        return float(text.removesuffix("s")) if text else default
    except ValueError:
        return default


def lifetime_seconds(call_fields: dict[str, Any]) -> float:
    """How long a call with these Ultravox fields can live at most: the join timeout plus the
    maximum duration (Ultravox ends it by then), plus a grace for the end report."""
    join = _seconds(call_fields.get("joinTimeout"), DEFAULT_JOIN_TIMEOUT_SECONDS)
    longest = _seconds(call_fields.get("maxDuration"), DEFAULT_MAX_DURATION_SECONDS)
    return join + longest + END_REPORT_GRACE_SECONDS


@dataclass(frozen=True)
class Decision:
    """What a flow did with a call. `record_id` defaults to the one of the provider's call id;
    `lifetime_seconds` is set when an Ultravox call was created."""

    call: InboundCall
    outcome: str
    received_at: float
    direction: str = "inbound"
    route: str | None = None
    ultravox_call_id: str | None = None
    lifetime_seconds: float | None = None
    reason: str | None = None
    record_id: str | None = None
    # When the flow decided, if not when `decided` is called (a webhook's report comes a
    # moment after its answer: app/api/webhooks.py, `Reports`).
    decided_at: float | None = None


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class CallLifecycle:
    """Records what the flows decide and holds their live-call slots."""

    def __init__(self, records: CallRecords, *, mask_numbers: bool) -> None:
        self.records = records
        self._mask = mask_numbers

    @staticmethod
    def record_id(call: InboundCall) -> str:
        return record_id_for(call.provider, call.call_id)

    async def admit(
        self, record_id: str, route: str, route_limit: int | None, lifetime: float
    ) -> bool:
        """Take a live-call slot for the call; False when over MAX_CONCURRENT_CALLS or the
        route's max_concurrent_calls (the flow then answers with the route's overflow)."""
        taken = await self.records.live_calls.acquire(record_id, route, route_limit, lifetime)
        if not taken:
            metrics.REFUSED_OVER_LIMIT.labels(route=route).inc()
        return taken

    async def release(self, record_id: str, route: str) -> None:
        """Give back a slot whose call will not happen (creating it failed)."""
        await self.records.live_calls.release(record_id, route)

    def _number(self, number: str) -> str:
        return mask_phone(number) if self._mask else number

    def decided(self, decision: Decision) -> None:
        """Record the flow's decision; an outcome without an Ultravox call ends the record
        (the agent's part of the call is over before it began), except a late repeat, which
        is only noted on the timeline of the call it repeats."""
        call = decision.call
        now = _when(time.time() if decision.decided_at is None else decision.decided_at)
        started = decision.outcome in (ANSWERED, DUPLICATE)
        detail = {"route": decision.route, "reason": decision.reason}
        kind = ("outbound." if decision.direction == "outbound" else "webhook.") + decision.outcome
        timeline = TimelineEntry(now, "bridge", kind, {k: v for k, v in detail.items() if v})
        if decision.outcome == LATE_REPEAT:
            # On the record of the call it repeats, if there is one; no record of its own.
            self.records.record(
                CallChange(
                    at=_when(decision.received_at),
                    record_id=decision.record_id or self.record_id(call),
                    timeline=timeline,
                )
            )
            return
        fields: dict[str, Any] = {
            "route": decision.route,
            "caller": self._number(call.from_number),
            "called": self._number(call.to_number),
            "answered_at": now,
        }
        if decision.lifetime_seconds is not None:
            fields["expires_at"] = _when(decision.received_at + decision.lifetime_seconds)
        self.records.record(
            CallChange(
                at=_when(decision.received_at),
                record_id=decision.record_id or self.record_id(call),
                ultravox_call_id=decision.ultravox_call_id,
                provider=call.provider,
                provider_call_ids=(call.call_id,) if call.call_id else (),
                create=True,
                direction=decision.direction,
                outcome=decision.outcome,
                fields=fields,
                ends=not started,
                ended_by=None if started else "bridge",
                timeline=timeline,
            )
        )

    def relay_ended(self, provider: str, provider_call_id: str, ended_by: str) -> None:
        """A relayed call (Vonage, Asterisk) ended: the service saw it end itself."""
        now = _when(time.time())
        self.records.record(
            CallChange(
                at=now,
                record_id=record_id_for(provider, provider_call_id),
                ends=True,
                ended_by="relay",
                timeline=TimelineEntry(now, "relay", "relay.ended", {"endedBy": ended_by}),
            )
        )

    def web_call_started(
        self, provider: str, call_id: str, ultravox_call_id: str, route: str, lifetime: float
    ) -> None:
        """A web page's call was created (`provider` is the web's name, `call_id` the id in
        the call's metadata): recorded like an answered phone call without numbers."""
        now = time.time()
        self.records.record(
            CallChange(
                at=_when(now),
                record_id=record_id_for(provider, call_id),
                ultravox_call_id=ultravox_call_id,
                provider=provider,
                provider_call_ids=(call_id,),
                create=True,
                direction="inbound",
                outcome=ANSWERED,
                fields={
                    "route": route,
                    "answered_at": _when(now),
                    "expires_at": _when(now + lifetime + END_REPORT_GRACE_SECONDS),
                },
                timeline=TimelineEntry(_when(now), "bridge", "web.answered", {"route": route}),
            )
        )

    def web_call_failed(self, provider: str, route: str, reason: str) -> None:
        """Ultravox did not create a web page's call: a record that ends as it begins."""
        now = _when(time.time())
        self.records.record(
            CallChange(
                at=now,
                record_id=new_record_id(),
                provider=provider,
                create=True,
                direction="inbound",
                outcome=FAILED,
                fields={"route": route},
                ends=True,
                ended_by="bridge",
                timeline=TimelineEntry(
                    now, "bridge", "web.failed", {"route": route, "reason": reason}
                ),
            )
        )

    def web_call_ended(self, ultravox_call_id: str, how: str) -> None:
        """The page that started a web call ended it (`how`: hung_up, deleted_unjoined), or
        found it over already (was_over: Ultravox's own report ends the record)."""
        now = _when(time.time())
        self.records.record(
            CallChange(
                at=now,
                ultravox_call_id=ultravox_call_id,
                ends=how != "was_over",
                ended_by="page",
                timeline=TimelineEntry(now, "page", "web.ended", {"how": how}, key="web.ended"),
            )
        )
