"""Events in, as record changes: Ultravox's account webhooks and the providers' normalised
status reports."""

import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from app.calltypes import CallStatus
from app.records.changes import CallChange, TimelineEntry, record_id_for

ULTRAVOX_EVENTS = ("call.started", "call.joined", "call.ended", "call.billed")


class NotAnEvent(ValueError):
    """A body that is not an Ultravox webhook payload."""


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _duration(value: Any) -> float | None:
    """`billedDuration`: a duration string such as "62.5s" (the format is not documented;
    a plain number of seconds is read too)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value.strip().removesuffix("s"))
        except ValueError:
            return None
    return None


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def ultravox_event(payload: Any, providers: Collection[str]) -> tuple[str, CallChange]:
    """The event name and the change an Ultravox webhook payload `{"event", "call"}` makes.
    A call unknown to the records is made only when its metadata names one of `providers`
    and its call id (a call this service created, written by another replica meanwhile)."""
    if not isinstance(payload, dict):
        raise NotAnEvent("the body is not a JSON object")
    event, call = payload.get("event"), payload.get("call")
    if event not in ULTRAVOX_EVENTS or not isinstance(call, dict):
        raise NotAnEvent("not an Ultravox call event (event, call)")
    call_id = _text(call.get("callId"), 64)
    if call_id is None:
        raise NotAnEvent("the call has no callId")
    raw_metadata = call.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    provider = metadata.get("provider")
    provider_call_id = _text(metadata.get("providerCallId"), 128)
    known = provider in providers and provider_call_id is not None
    joined, ended = _instant(call.get("joined")), _instant(call.get("ended"))
    now = datetime.now(UTC)
    agent_seconds = (ended - joined).total_seconds() if joined and ended else None
    end_reason = _text(call.get("endReason"), 32)
    detail = {"endReason": end_reason, "billingStatus": call.get("billingStatus")}
    change = CallChange(
        at=ended or _instant(call.get("created")) or now,
        record_id=record_id_for(provider, provider_call_id) if known else None,  # type: ignore[arg-type]
        ultravox_call_id=call_id,
        provider=provider if known else None,
        provider_call_ids=(provider_call_id,) if known else (),  # type: ignore[arg-type]
        create=known,
        direction="outbound" if metadata.get("direction") == "outbound" else "inbound",
        fields={
            "joined_at": joined,
            "end_reason": end_reason,
            "short_summary": _text(call.get("shortSummary"), 2000),
            "billed_duration_seconds": _duration(call.get("billedDuration")),
            "billing_status": _text(call.get("billingStatus"), 48),
        },
        ends=ended is not None and event in ("call.ended", "call.billed"),
        ended_by="ultravox",
        agent_duration_seconds=agent_seconds,
        timeline=TimelineEntry(
            now,
            "ultravox",
            str(event),
            {k: v for k, v in detail.items() if v},
            key=f"ultravox:{event}",
        ),
    )
    return str(event), change


def status_change(status: CallStatus) -> CallChange:
    """The change a provider's status report makes to a call the records know."""
    now = datetime.now(UTC)
    at = datetime.fromtimestamp(status.at or time.time(), UTC)
    detail: dict[str, Any] = {
        "status": status.status,
        "durationSeconds": status.duration_seconds,
        "hangupCause": status.hangup_cause,
    }
    return CallChange(
        at=at,
        provider=status.provider,
        provider_call_ids=status.call_ids,
        fields={
            "provider_status": status.status,
            "hangup_cause": status.hangup_cause,
            "duration_seconds": status.duration_seconds,
        },
        ends=status.final,
        ended_by="provider",
        timeline=TimelineEntry(
            now,
            "provider",
            f"status.{status.status}",
            {k: v for k, v in detail.items() if v is not None},
            key=f"status:{status.status}:{status.sequence or ''}",
        ),
    )
