"""A call record as JSON: the shape of `GET /api/calls`, and of the summary POSTed to
CALL_EVENTS_URL when a call ends."""

import json
from datetime import datetime
from typing import Any

from app.records.models import CallEvent, CallRecord


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def record_json(record: CallRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "provider": record.provider,
        "providerCallId": record.provider_call_id,
        "ultravoxCallId": record.ultravox_call_id,
        "direction": record.direction,
        "route": record.route,
        "caller": record.caller,
        "called": record.called,
        "outcome": record.outcome,
        "state": record.state,
        "receivedAt": _time(record.received_at),
        "answeredAt": _time(record.answered_at),
        "joinedAt": _time(record.joined_at),
        "endedAt": _time(record.ended_at),
        "endedBy": record.ended_by,
        "endReason": record.end_reason,
        "providerStatus": record.provider_status,
        "hangupCause": record.hangup_cause,
        "durationSeconds": record.duration_seconds,
        "billedDurationSeconds": record.billed_duration_seconds,
        "billingStatus": record.billing_status,
        "shortSummary": record.short_summary,
        "delivery": {
            "status": record.delivery_status,
            "attempts": record.delivery_attempts,
            "error": record.delivery_error,
        },
        "updatedAt": _time(record.updated_at),
    }


def event_json(event: CallEvent) -> dict[str, Any]:
    return {
        "at": _time(event.at),
        "source": event.source,
        "kind": event.kind,
        "detail": json.loads(event.detail) if event.detail else {},
    }


def end_summary(record: CallRecord) -> bytes:
    """The body POSTed to CALL_EVENTS_URL: `{"event": "call.ended", "call": {...}}`, like
    Ultravox's own webhooks, without the delivery fields (they describe this very POST)."""
    call = record_json(record)
    del call["delivery"], call["updatedAt"]
    return json.dumps({"event": "call.ended", "call": call}, separators=(",", ":")).encode()
