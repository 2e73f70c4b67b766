"""Exotel's StatusCallback for a placed call: sent once the call ends (and, when asked, once
answered), as a multipart form in the older documentation and as JSON in the newer, so both
are read. Exotel signs it no more than its other requests."""

from dataclasses import dataclass

from app.calltypes import CallStatus, MalformedWebhook, WebhookRequest
from app.providers.base import require_fields
from app.providers.exotel.fields import request_fields

# Exotel's final statuses, and the one of an `answered` event.
STATUSES = frozenset({"completed", "failed", "busy", "no-answer", "in-progress", "answered"})
FINAL_STATUSES = frozenset({"completed", "failed", "busy", "no-answer"})
MAX_VALUE_CHARS = 64


@dataclass(frozen=True)
class ExotelStatus:
    """One status callback: which call, how it stands, and what Exotel measured."""

    call_sid: str
    status: str
    event_type: str | None = None
    direction: str | None = None
    duration_seconds: int | None = None
    updated: str | None = None


def _short(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name, "").strip()
    return value[:MAX_VALUE_CHARS] if value else None


def parse_status(request: WebhookRequest) -> ExotelStatus:
    """The status a StatusCallback reports; `MalformedWebhook` without a call id or a known
    status."""
    fields = request_fields(request)
    call_sid, status = require_fields(fields, "CallSid", "Status")
    if len(call_sid) > MAX_VALUE_CHARS:
        raise MalformedWebhook("CallSid is too long for an Exotel call id")
    if status.lower() not in STATUSES:
        raise MalformedWebhook(f"Status is not one of {', '.join(sorted(STATUSES))}")
    duration = _short(fields, "ConversationDuration")
    return ExotelStatus(
        call_sid=call_sid,
        status=status.lower(),
        event_type=_short(fields, "EventType"),
        direction=_short(fields, "Direction"),
        duration_seconds=int(duration)
        if duration and duration.isascii() and duration.isdigit()
        else None,
        updated=_short(fields, "DateUpdated"),
    )


def status_fields(status: ExotelStatus) -> dict[str, str]:
    """The status as a log line's fields, under the names the service's log lines use."""
    fields = {"call_id": status.call_sid, "status": status.status}
    optional = {
        "event_type": status.event_type,
        "direction": status.direction,
        "duration_seconds": None
        if status.duration_seconds is None
        else str(status.duration_seconds),
        "timestamp": status.updated,
    }
    return fields | {name: value for name, value in optional.items() if value is not None}


def call_status(provider: str, status: ExotelStatus) -> CallStatus:
    """The status as the call records read every provider's reports."""
    return CallStatus(
        provider=provider,
        call_ids=(status.call_sid,),
        status=status.status,
        final=status.status in FINAL_STATUSES,
        duration_seconds=None
        if status.duration_seconds is None
        else float(status.duration_seconds),
        sequence=status.event_type,
    )
