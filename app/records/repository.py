"""Reading and writing call records: every query the service makes, on an `AsyncSession` the
caller opens (one transaction each)."""

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.records.changes import (
    DUPLICATE,
    FIRST_WINS,
    LATEST_WINS,
    PENDING,
    Applied,
    CallChange,
    TimelineEntry,
    new_record_id,
    record_id_for,
)
from app.records.models import CallEvent, CallRecord, Delivery, utcnow

LIVE = "live"
ENDED = "ended"
# Text longer than this in a timeline entry's detail is cut: the timeline is for reading.
DETAIL_TEXT_LIMIT = 500


class BadCursor(ValueError):
    """A paging cursor this service did not write."""


async def find(session: AsyncSession, change: CallChange) -> CallRecord | None:
    """The record `change` is about, if it exists."""
    if change.record_id is not None:
        found = await session.get(CallRecord, change.record_id)
        if found is not None:
            return found
    if change.ultravox_call_id:
        query = select(CallRecord).where(CallRecord.ultravox_call_id == change.ultravox_call_id)
        found = (await session.execute(query)).scalar_one_or_none()
        if found is not None:
            return found
    if change.provider and change.provider_call_ids:
        query = select(CallRecord).where(
            CallRecord.provider == change.provider,
            CallRecord.provider_call_id.in_(change.provider_call_ids),
        )
        return (await session.execute(query.limit(1))).scalar_one_or_none()
    return None


def _new_record(change: CallChange, now: datetime) -> CallRecord:
    if change.record_id is not None:
        record_id = change.record_id
    elif change.provider and change.provider_call_ids:
        record_id = record_id_for(change.provider, change.provider_call_ids[0])
    else:
        record_id = new_record_id()
    return CallRecord(
        id=record_id,
        provider=change.provider or "unknown",
        provider_call_id=change.provider_call_ids[0] if change.provider_call_ids else None,
        direction=change.direction or "inbound",
        outcome=PENDING,
        state=LIVE,
        received_at=change.at,
        delivery_attempts=0,
        updated_at=now,
    )


async def apply(
    session: AsyncSession, change: CallChange, outbox_delay: float | None
) -> Applied | None:
    """Merge `change` into its record (made when `change.create` and none exists). When the
    call ends now and `outbox_delay` is given, its summary is queued for delivery that many
    seconds later (time for the provider's status and Ultravox's billing to arrive).
    None: no such record, and the change does not create one."""
    now = utcnow()
    record = await find(session, change)
    if record is None:
        if not change.create:
            return None
        record = _new_record(change, now)
        session.add(record)
    _merge(record, change)
    ended_now = False
    if change.ends and record.state != ENDED:
        record.state = ENDED
        record.ended_at = change.at
        record.ended_by = change.ended_by
        ended_now = True
        if outbox_delay is not None:
            session.add(
                Delivery(
                    call_id=record.id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now + timedelta(seconds=outbox_delay),
                    created_at=now,
                )
            )
            record.delivery_status = "pending"
    record.updated_at = now
    await session.flush()  # a row another replica inserted first fails here, not at commit
    if change.timeline is not None:
        await add_timeline(session, record.id, change.timeline)
    return Applied(record.id, record.route, ended_now)


def _merge(record: CallRecord, change: CallChange) -> None:
    if change.ultravox_call_id and record.ultravox_call_id is None:
        record.ultravox_call_id = change.ultravox_call_id
    if change.provider_call_ids and record.provider_call_id is None:
        record.provider_call_id = change.provider_call_ids[0]
    for name, value in change.fields.items():
        if value is None:
            continue
        if name in LATEST_WINS or (name in FIRST_WINS and getattr(record, name) is None):
            setattr(record, name, value)
    if change.agent_duration_seconds is not None and record.duration_seconds is None:
        record.duration_seconds = change.agent_duration_seconds
    # The call was received when the bridge first decided about it (an event may come first).
    if change.outcome is not None and change.at < record.received_at:
        record.received_at = change.at
    if change.direction and record.outcome == PENDING:
        record.direction = change.direction
    # A repeated webhook does not hide what the first one did; an event learnt before the
    # bridge's decision is stored (`pending`) leaves the decision to come.
    decisive = change.outcome not in (None, PENDING, DUPLICATE)
    if decisive or (change.outcome == DUPLICATE and record.outcome == PENDING):
        record.outcome = change.outcome  # type: ignore[assignment]


async def add_timeline(session: AsyncSession, record_id: str, entry: TimelineEntry) -> bool:
    """Append `entry` to the record's timeline, unless an entry with its key is there."""
    if entry.key is not None:
        query = select(CallEvent.id).where(
            CallEvent.call_id == record_id, CallEvent.key == entry.key
        )
        if (await session.execute(query)).first() is not None:
            return False
    session.add(
        CallEvent(
            call_id=record_id,
            at=entry.at,
            source=entry.source,
            kind=entry.kind,
            key=entry.key,
            detail=json.dumps(_bounded(entry.detail), separators=(",", ":"))
            if entry.detail
            else None,
        )
    )
    return True


def _bounded(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value[:DETAIL_TEXT_LIMIT] if isinstance(value, str) else value
        for key, value in detail.items()
    }


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFilters:
    since: datetime | None = None
    until: datetime | None = None
    route: str | None = None
    provider: str | None = None
    outcome: str | None = None
    direction: str | None = None
    state: str | None = None


def encode_cursor(at: datetime, record_id: str) -> str:
    raw = f"{at.isoformat()}|{record_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, record_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not one this service gave") from None
    if parsed.tzinfo is None:
        raise BadCursor("cursor is not one this service gave")
    return parsed, record_id


async def list_calls(
    session: AsyncSession, filters: CallFilters, limit: int, cursor: str | None = None
) -> tuple[Sequence[CallRecord], str | None]:
    """Records newest first (by time received), and the cursor of the next page if any."""
    query = select(CallRecord)
    conditions = [
        column == value
        for column, value in (
            (CallRecord.route, filters.route),
            (CallRecord.provider, filters.provider),
            (CallRecord.outcome, filters.outcome),
            (CallRecord.direction, filters.direction),
            (CallRecord.state, filters.state),
        )
        if value is not None
    ]
    if filters.since is not None:
        conditions.append(CallRecord.received_at >= filters.since)
    if filters.until is not None:
        conditions.append(CallRecord.received_at < filters.until)
    if cursor is not None:
        at, record_id = decode_cursor(cursor)
        conditions.append(
            or_(
                CallRecord.received_at < at,
                and_(CallRecord.received_at == at, CallRecord.id < record_id),
            )
        )
    query = query.where(*conditions).order_by(CallRecord.received_at.desc(), CallRecord.id.desc())
    rows = (await session.execute(query.limit(limit + 1))).scalars().all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.received_at, last.id)


async def changed_after(
    session: AsyncSession, after: datetime, after_id: str, limit: int
) -> Sequence[CallRecord]:
    """Records changed after (`after`, `after_id`), oldest change first: what a page showing
    calls has not seen yet."""
    query = (
        select(CallRecord)
        .where(
            or_(
                CallRecord.updated_at > after,
                and_(CallRecord.updated_at == after, CallRecord.id > after_id),
            )
        )
        .order_by(CallRecord.updated_at, CallRecord.id)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def get_call(
    session: AsyncSession, record_id: str
) -> tuple[CallRecord, Sequence[CallEvent]] | None:
    record = await session.get(CallRecord, record_id)
    if record is None:
        return None
    query = select(CallEvent).where(CallEvent.call_id == record_id)
    events = (await session.execute(query.order_by(CallEvent.at, CallEvent.id))).scalars().all()
    return record, events


# --- upkeep -----------------------------------------------------------------------------------


async def overdue(session: AsyncSession, now: datetime, limit: int) -> Sequence[CallRecord]:
    """Live records past the time their call must have ended by (join timeout plus maximum
    duration): their end was never reported."""
    query = (
        select(CallRecord)
        .where(CallRecord.state == LIVE, CallRecord.expires_at < now)
        .order_by(CallRecord.expires_at)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def purge(session: AsyncSession, before: datetime) -> int:
    """Delete the records of calls received before `before`, with their timelines and
    deliveries; returns how many records went."""
    old = select(CallRecord.id).where(CallRecord.received_at < before)
    await session.execute(delete(CallEvent).where(CallEvent.call_id.in_(old)))
    await session.execute(delete(Delivery).where(Delivery.call_id.in_(old)))
    result = await session.execute(delete(CallRecord).where(CallRecord.received_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def due_deliveries(session: AsyncSession, now: datetime, limit: int) -> Sequence[Delivery]:
    query = (
        select(Delivery)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()


async def claim_delivery(session: AsyncSession, delivery: Delivery, lease_until: datetime) -> bool:
    """Take `delivery` for one attempt: only one replica's update matches its old time."""
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.next_attempt_at == delivery.next_attempt_at)
        .values(next_attempt_at=lease_until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
