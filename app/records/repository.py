"""Reading and writing call records: every query the service makes, on an `AsyncSession` the
caller opens (one transaction each); the writer's `apply`, on an `AsyncConnection` (its
statements are SQLAlchemy Core's, and the ORM session's layers cost more than they do)."""

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    String,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from app.records.changes import (
    DUPLICATE,
    FIRST_WINS,
    LATEST_WINS,
    PENDING,
    TRANSFER_STARTED,
    Applied,
    CallChange,
    TimelineEntry,
    new_record_id,
    record_id_for,
)
from app.records.models import Base, CallEvent, CallRecord, Delivery, utcnow

LIVE = "live"
ENDED = "ended"
ULTRAVOX = "ultravox"  # `ended_by` of Ultravox's own end reports
# Text longer than this in a timeline entry's detail is cut: the timeline is for reading.
DETAIL_TEXT_LIMIT = 500
# A timeline entry's detail as compact JSON; one encoder for all (`json.dumps` with options
# makes one a call).
_DETAIL_JSON = json.JSONEncoder(separators=(",", ":"))


class BadCursor(ValueError):
    """A paging cursor this service did not write."""


Row = dict[str, Any]
"""A call record as the writer reads and changes it: its columns by name. Plain dicts, not
ORM objects: a batch touches every column of every record it makes, and the ORM's attribute
bookkeeping cost more than the rest of the write."""

CALLS = Base.metadata.tables[CallRecord.__tablename__]
EVENTS = Base.metadata.tables[CallEvent.__tablename__]
DELIVERIES = Base.metadata.tables[Delivery.__tablename__]
_NO_VALUES: Row = dict.fromkeys(CALLS.columns.keys())


class _Known:
    """The records a batch of changes is about, found by each key a change may name; records
    the batch creates join them, so a later change in the batch finds them too."""

    def __init__(self, records: Iterable[Row]) -> None:
        self.by_id: dict[str, Row] = {}
        self.by_ultravox: dict[str, Row] = {}
        self.by_provider: dict[tuple[str, str], Row] = {}
        for record in records:
            self.add(record)

    def add(self, record: Row) -> None:
        self.by_id[record["id"]] = record
        if record["ultravox_call_id"]:
            self.by_ultravox[record["ultravox_call_id"]] = record
        if record["provider_call_id"]:
            self.by_provider[(record["provider"], record["provider_call_id"])] = record

    def find(self, change: CallChange) -> Row | None:
        """The record `change` is about: by record id, then Ultravox call id, then provider
        call id."""
        if change.record_id is not None and change.record_id in self.by_id:
            return self.by_id[change.record_id]
        if change.ultravox_call_id and change.ultravox_call_id in self.by_ultravox:
            return self.by_ultravox[change.ultravox_call_id]
        if change.provider:
            for provider_call_id in change.provider_call_ids:
                found = self.by_provider.get((change.provider, provider_call_id))
                if found is not None:
                    return found
        return None


class _Statements:
    """The writer's statements in one SQL dialect, built once: building a statement costs
    SQLAlchemy more Python than running it. A list of values is bound as one parameter,
    whatever its length (`listed`: an array in PostgreSQL, a JSON list in SQLite): the values
    of a plain IN list are rendered and bound one by one, 5 (SQLite) to 12 (PostgreSQL) Python
    calls each, in a statement whose text (PostgreSQL's prepared statement) changes with
    their number."""

    def __init__(self, dialect: str) -> None:
        self.postgresql = dialect == "postgresql"
        self._loads: dict[int, Select[*tuple[Any, ...]]] = {}
        self.timeline_keys = select(EVENTS.c.call_id, EVENTS.c.key).where(
            self._among(EVENTS.c.call_id, "record_ids"), self._among(EVENTS.c.key, "keys")
        )
        self.transferred = select(EVENTS.c.call_id).where(
            self._among(EVENTS.c.call_id, "record_ids"), EVENTS.c.kind == TRANSFER_STARTED
        )
        self.unqueue = delete(DELIVERIES).where(
            self._among(DELIVERIES.c.call_id, "record_ids"), DELIVERIES.c.status == "pending"
        )
        self.update_record = update(CALLS).where(CALLS.c.id == bindparam("record_id"))
        self.insert_records = insert(CALLS)
        self.insert_events = insert(EVENTS)
        self.insert_deliveries = insert(DELIVERIES)

    def _among(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        """`column IN` the values of parameter `name`."""
        if self.postgresql:
            return column == any_(bindparam(name, type_=ARRAY(String)))
        listed = func.json_each(bindparam(name, type_=String)).table_valued("value")
        return column.in_(select(listed.c.value))

    def listed(self, values: Iterable[str]) -> list[str] | str:
        """The parameter of a list of values."""
        return list(values) if self.postgresql else json.dumps(list(values))

    def load(self, providers: int) -> Select[*tuple[Any, ...]]:
        """The records with one of the ids `ids`, Ultravox call ids `ultravox_ids`, or, for
        each of `providers` providers, with provider `provider_<n>` and one of the call ids
        `call_ids_<n>`."""
        if providers not in self._loads:
            by_provider = [
                and_(
                    CALLS.c.provider == bindparam(f"provider_{n}"),
                    self._among(CALLS.c.provider_call_id, f"call_ids_{n}"),
                )
                for n in range(providers)
            ]
            self._loads[providers] = select(CALLS).where(
                or_(
                    self._among(CALLS.c.id, "ids"),
                    self._among(CALLS.c.ultravox_call_id, "ultravox_ids"),
                    *by_provider,
                )
            )
        return self._loads[providers]


@cache
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


async def _load(
    connection: AsyncConnection, statements: _Statements, changes: Sequence[CallChange]
) -> Sequence[RowMapping]:
    """Every existing record the changes name, in one query."""
    ids = {change.record_id for change in changes if change.record_id is not None}
    ultravox_ids = {change.ultravox_call_id for change in changes if change.ultravox_call_id}
    by_provider: dict[str, set[str]] = {}
    for change in changes:
        if change.provider and change.provider_call_ids:
            by_provider.setdefault(change.provider, set()).update(change.provider_call_ids)
    if not ids and not ultravox_ids and not by_provider:
        return ()
    listed = statements.listed
    params = {"ids": listed(ids), "ultravox_ids": listed(ultravox_ids)}
    for n, (provider, call_ids) in enumerate(by_provider.items()):
        params[f"provider_{n}"] = provider
        params[f"call_ids_{n}"] = listed(call_ids)
    query = statements.load(len(by_provider))
    return (await connection.execute(query, params)).mappings().all()


async def _timeline_keys(
    connection: AsyncConnection,
    statements: _Statements,
    known: _Known,
    changes: Sequence[CallChange],
) -> set[tuple[str, str]]:
    """The (record id, key) pairs already on the timelines the changes add keyed entries to."""
    keys = {c.timeline.key for c in changes if c.timeline is not None and c.timeline.key}
    if not keys:
        return set()
    record_ids = set(known.by_id)
    for change in changes:
        if change.record_id is not None:
            record_ids.add(change.record_id)
        if change.provider and change.provider_call_ids:
            record_ids.add(record_id_for(change.provider, change.provider_call_ids[0]))
    params = {"record_ids": statements.listed(record_ids), "keys": statements.listed(keys)}
    rows = (await connection.execute(statements.timeline_keys, params)).all()
    return {(call_id, key) for call_id, key in rows if key is not None}


async def _transferred(
    connection: AsyncConnection,
    statements: _Statements,
    known: _Known,
    changes: Sequence[CallChange],
) -> set[str]:
    """The records, among those the changes name when one of them is an Ultravox end report,
    whose call has been transferred to a person. All of them, not only those each end report
    finds before the batch: an earlier change in the batch may give a record the Ultravox call
    id by which a later end report finds it."""
    if not known.by_id or not any(c.ends and c.ended_by == ULTRAVOX for c in changes):
        return set()
    params = {"record_ids": statements.listed(known.by_id)}
    return set((await connection.execute(statements.transferred, params)).scalars().all())


def _new_record(change: CallChange, now: datetime) -> Row:
    if change.record_id is not None:
        record_id = change.record_id
    elif change.provider and change.provider_call_ids:
        record_id = record_id_for(change.provider, change.provider_call_ids[0])
    else:
        record_id = new_record_id()
    return {
        **_NO_VALUES,
        "id": record_id,
        "provider": change.provider or "unknown",
        "provider_call_id": change.provider_call_ids[0] if change.provider_call_ids else None,
        "direction": change.direction or "inbound",
        "outcome": PENDING,
        "state": LIVE,
        "received_at": change.at,
        "delivery_attempts": 0,
        "updated_at": now,
    }


async def apply(
    connection: AsyncConnection, changes: Sequence[CallChange], outbox_delay: float | None
) -> list[Applied | None]:
    """Merge each change into its record (made when `change.create` and none exists), in
    order, with few queries whatever the number of changes: the records and timeline keys are
    read at once, the new rows go in one statement per table, and the records read are updated
    in one statement per run of them (by id) changing the same columns. When a call
    ends now and `outbox_delay` is given, its summary is queued for delivery that many seconds
    later (time for the provider's status and Ultravox's billing to arrive). An item is None
    when its change names no record and creates none. A row another replica inserted first
    fails the insert (IntegrityError): the caller applies the batch again, which then finds
    it."""
    now = utcnow()
    statements = _statements(connection.dialect.name)
    loaded = await _load(connection, statements, changes)
    known = _Known(dict(row) for row in loaded)
    keys = await _timeline_keys(connection, statements, known, changes)
    transferred = await _transferred(connection, statements, known, changes)
    # When the summary of a call that ends now is due, if one is queued.
    send_at = None if outbox_delay is None else now + timedelta(seconds=outbox_delay)
    applied: list[Applied | None] = []
    created: list[Row] = []  # inserted at the end, with whatever later changes add
    events: list[Row] = []
    deliveries: list[Row] = []
    reopened: set[str] = set()
    for change in changes:
        record = known.find(change)
        if record is None:
            if not change.create:
                applied.append(None)
                continue
            record = _new_record(change, now)
            created.append(record)
        _merge(record, change)
        known.add(record)  # under the ids this change gave it, too
        record_id = record["id"]
        entry = change.timeline
        new_entry = entry is not None and (entry.key is None or (record_id, entry.key) not in keys)
        if entry is not None and entry.kind == TRANSFER_STARTED:
            transferred.add(record_id)
            if new_entry and _reopen(record):
                reopened.add(record_id)
                deliveries = [item for item in deliveries if item["call_id"] != record_id]
        # An agent's call ending is not the phone call's end once the caller went to a person.
        agent_left = change.ends and change.ended_by == ULTRAVOX and record_id in transferred
        ends = change.ends and not agent_left
        ended_now = False
        if ends and record["state"] != ENDED:
            record["state"] = ENDED
            record["ended_at"] = change.at
            record["ended_by"] = change.ended_by
            ended_now = True
            if send_at is not None:
                deliveries.append(
                    {
                        "call_id": record_id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": send_at,
                        "created_at": now,
                    }
                )
                record["delivery_status"] = "pending"
        record["updated_at"] = now
        if entry is not None and new_entry:
            if entry.key is not None:
                keys.add((record_id, entry.key))
            events.append(_event_row(record_id, entry))
        applied.append(
            Applied(record_id, record["route"], ended_now, agent_left and record["state"] != ENDED)
        )
    # The records that were read and changed, then one executemany per table, records first:
    # the timeline and outbox rows refer to them.
    for rows in _updates(loaded, known):
        await connection.execute(statements.update_record, rows)
    if created:
        await connection.execute(statements.insert_records, created)
    if events:
        await connection.execute(statements.insert_events, events)
    if reopened:  # before the inserts: a later change in the batch may have ended it again
        await connection.execute(statements.unqueue, {"record_ids": statements.listed(reopened)})
    if deliveries:
        await connection.execute(statements.insert_deliveries, deliveries)
    return applied


def _updates(loaded: Sequence[RowMapping], known: _Known) -> Iterator[list[Row]]:
    """The parameters of the UPDATEs of the records that were read: each record's changed
    columns (a column another writer, the outbox, changed meanwhile is left as it is), by
    record id, one executemany for each run of records changing the same columns."""
    changed = []
    for original in sorted(loaded, key=itemgetter("id")):
        record = known.by_id[original["id"]]
        values = {name: value for name, value in record.items() if value != original[name]}
        if values:
            changed.append({**values, "record_id": original["id"]})
    for _, rows in groupby(changed, key=lambda values: values.keys()):
        yield list(rows)


def _reopen(record: Row) -> bool:
    """Undo the end of a record Ultravox's end report closed before its transfer step landed
    (the step is queued, the report written at once): the agent's call ended because the
    caller went to a person, and the phone call goes on. Not once its summary went out."""
    if record["state"] != ENDED or record["ended_by"] != ULTRAVOX:
        return False
    if record["delivery_status"] not in (None, "pending"):
        return False
    record["state"] = LIVE
    record["ended_at"] = None
    record["ended_by"] = None
    record["delivery_status"] = None
    return True


def _merge(record: Row, change: CallChange) -> None:
    if change.ultravox_call_id and record["ultravox_call_id"] is None:
        record["ultravox_call_id"] = change.ultravox_call_id
    if change.provider_call_ids and record["provider_call_id"] is None:
        record["provider_call_id"] = change.provider_call_ids[0]
    for name, value in change.fields.items():
        if value is None:
            continue
        if name in LATEST_WINS or (name in FIRST_WINS and record[name] is None):
            record[name] = value
    if change.agent_duration_seconds is not None and record["duration_seconds"] is None:
        record["duration_seconds"] = change.agent_duration_seconds
    # The call was received when the bridge first decided about it (an event may come first).
    if change.outcome is not None and change.at < record["received_at"]:
        record["received_at"] = change.at
    if change.direction and record["outcome"] == PENDING:
        record["direction"] = change.direction
    # A repeated webhook does not hide what the first one did; an event learnt before the
    # bridge's decision is stored (`pending`) leaves the decision to come.
    decisive = change.outcome not in (None, PENDING, DUPLICATE)
    if decisive or (change.outcome == DUPLICATE and record["outcome"] == PENDING):
        record["outcome"] = change.outcome


async def add_timeline(session: AsyncSession, record_id: str, entry: TimelineEntry) -> bool:
    """Append `entry` to the record's timeline, unless an entry with its key is there."""
    if entry.key is not None:
        query = select(CallEvent.id).where(
            CallEvent.call_id == record_id, CallEvent.key == entry.key
        )
        if (await session.execute(query)).first() is not None:
            return False
    await session.execute(insert(EVENTS), _event_row(record_id, entry))
    return True


def _event_row(record_id: str, entry: TimelineEntry) -> dict[str, Any]:
    return {
        "call_id": record_id,
        "at": entry.at,
        "source": entry.source,
        "kind": entry.kind,
        "key": entry.key,
        "detail": _DETAIL_JSON.encode(_bounded(entry.detail)) if entry.detail else None,
    }


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
