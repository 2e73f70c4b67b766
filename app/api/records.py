"""The call records API, for scripts and the calls page (bearer tokens from BRIDGE_API_TOKENS):

- `GET /api/calls`: records newest first, filtered, a page at a time (`nextCursor`);
- `GET /api/calls/changes?after=TOKEN`: records changed since a token, oldest change first
  (polling); without `after`, no records and the token of now;
- `GET /api/calls/events`: the same changes as a Server-Sent Events stream (`event: call`,
  the record as `data`, its token as `id`, so `Last-Event-ID` resumes);
- `GET /api/calls/{id}`: one record with its timeline, and with `?transcript=true` the
  conversation, fetched from Ultravox when asked.

Refusals are `APIError`s, answered as JSON `{"detail": ...}` by `app/api/errors.py`."""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import BridgeDep, RecordsDep, SettingsDep
from app.api.errors import APIError
from app.auth import matches_any
from app.console.access import session_of
from app.records import repository
from app.records.changes import OUTCOMES
from app.records.models import CallRecord, utcnow
from app.records.repository import BadCursor, CallFilters
from app.records.service import CallRecords
from app.records.summary import event_json, record_json
from app.ultravox import UltravoxError

router = APIRouter(prefix="/api/calls", tags=["records"])
logger = logging.getLogger("app.records")

MAX_PAGE = 200
# Streams of changes open at once per process; more are refused with 503.
MAX_STREAMS = 50
# A stream looks at the database this often even without a local write, for other replicas'.
STREAM_POLL_SECONDS = 2.0
STREAM_HEARTBEAT_SECONDS = 15.0
# Other replicas' clocks may lag: a stream looks this far back and skips what it already sent.
CLOCK_OVERLAP = timedelta(seconds=2)


async def require_token(request: Request, settings: SettingsDep) -> None:
    """Let the request in when it carries one of BRIDGE_API_TOKENS as a bearer token, or, for
    a GET without an Authorization header, the calls console's session cookie. Only reads
    take the cookie: a request that changes something would need the console's CSRF checks."""
    if not settings.bridge_api_tokens:
        raise APIError(
            404,
            "the calls API is disabled: set BRIDGE_API_TOKENS (comma-separated secret tokens) "
            "and restart the service",
        )
    if (
        request.method in ("GET", "HEAD")
        and "authorization" not in request.headers
        and session_of(request) is not None
    ):
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    presented = given.strip().encode() if scheme.lower() == "bearer" else b""
    tokens = [token.get_secret_value().encode() for token in settings.bridge_api_tokens]
    if not matches_any(presented, tokens):
        raise APIError(
            401,
            "a valid API token is required: send Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="ultravox-bridge"'},
        )


Authorized = Annotated[None, Depends(require_token)]


@asynccontextmanager
async def reading(records: CallRecords) -> AsyncIterator[AsyncSession]:
    """A session for one answer; the database down is a 503, not a crash."""
    try:
        async with records.sessions() as session:
            yield session
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("records.read_failed", extra={"fields": {"error": repr(exc)[:300]}})
        raise APIError(503, "the call records database is unavailable; try again") from None


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise APIError(
            422, f"{name} must be an ISO-8601 time such as 2026-12-02T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise APIError(422, f"{name} must name its time zone, such as Z or +01:00")
    return parsed


@router.get("")
async def list_calls(
    _: Authorized,
    records: RecordsDep,
    since: str | None = None,
    until: str | None = None,
    route: Annotated[str | None, Query(max_length=128)] = None,
    provider: Annotated[str | None, Query(max_length=16)] = None,
    outcome: str | None = None,
    direction: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> JSONResponse:
    """Call records, newest first; `nextCursor` fetches the next page with the same filters."""
    if outcome is not None and outcome not in OUTCOMES:
        raise APIError(422, f"outcome must be one of {', '.join(OUTCOMES)}")
    if direction is not None and direction not in ("inbound", "outbound"):
        raise APIError(422, "direction must be inbound or outbound")
    if state is not None and state not in (repository.LIVE, repository.ENDED):
        raise APIError(422, "state must be live or ended")
    filters = CallFilters(
        since=_instant(since, "since"),
        until=_instant(until, "until"),
        route=route,
        provider=provider,
        outcome=outcome,
        direction=direction,
        state=state,
    )
    async with reading(records) as session:
        try:
            rows, next_cursor = await repository.list_calls(session, filters, limit, cursor)
        except BadCursor as exc:
            raise APIError(422, str(exc)) from None
    return JSONResponse({"calls": [record_json(row) for row in rows], "nextCursor": next_cursor})


def _token(record: CallRecord) -> str:
    return repository.encode_cursor(record.updated_at, record.id)


def _start(after: str | None) -> tuple[datetime, str]:
    if after is None:
        return utcnow(), ""
    try:
        return repository.decode_cursor(after)
    except BadCursor as exc:
        raise APIError(422, f"after: {exc}") from None


@router.get("/changes")
async def changes(
    _: Authorized,
    records: RecordsDep,
    after: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    """Records changed after the token `after` (oldest first) and the token to ask with next.
    Without `after`: no records, and the token of now, to start polling from."""
    at, record_id = _start(after)
    if after is None:
        return JSONResponse({"calls": [], "next": repository.encode_cursor(at, record_id)})
    async with reading(records) as session:
        rows = await repository.changed_after(session, at, record_id, limit)
    token = _token(rows[-1]) if rows else after
    return JSONResponse({"calls": [record_json(row) for row in rows], "next": token})


class _Streams:
    open = 0


@router.get("/events")
async def events(
    _: Authorized, request: Request, records: RecordsDep, after: str | None = None
) -> StreamingResponse:
    """Server-Sent Events: `event: call` with a changed record as `data` whenever a call is
    recorded, changes or ends; `id` is the change token (a reconnecting EventSource resumes
    from it through Last-Event-ID); a comment line every 15 s keeps proxies from closing it."""
    at, record_id = _start(request.headers.get("last-event-id") or after)
    if _Streams.open >= MAX_STREAMS:
        raise APIError(503, f"too many open event streams (at most {MAX_STREAMS})")
    return StreamingResponse(
        _stream(request, records, at, record_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, records: CallRecords, at: datetime, record_id: str
) -> AsyncIterator[str]:
    _Streams.open += 1
    sent: dict[str, datetime] = {}  # records sent within the overlap, by id: their change time
    version = records.version
    quiet = 0.0
    try:
        yield ": connected\n\n"
        while not await request.is_disconnected():
            try:
                async with records.sessions() as session:
                    rows = await repository.changed_after(session, at - CLOCK_OVERLAP, "", MAX_PAGE)
            except (SQLAlchemyError, OSError):
                rows = []  # the database is down: try again at the next look
            for row in rows:
                if sent.get(row.id) == row.updated_at or row.updated_at < at - CLOCK_OVERLAP:
                    continue
                if (row.updated_at, row.id) <= (at, record_id) and row.id not in sent:
                    continue  # seen before this stream started (or before Last-Event-ID)
                sent[row.id] = row.updated_at
                if (row.updated_at, row.id) > (at, record_id):
                    at, record_id = row.updated_at, row.id
                data = json.dumps(record_json(row), separators=(",", ":"))
                yield f"id: {_token(row)}\nevent: call\ndata: {data}\n\n"
                quiet = 0.0
            horizon = at - CLOCK_OVERLAP
            sent = {key: when for key, when in sent.items() if when >= horizon}
            if len(rows) == MAX_PAGE:
                continue
            new_version = await records.wait_for_change(version, STREAM_POLL_SECONDS)
            quiet = 0.0 if new_version != version else quiet + STREAM_POLL_SECONDS
            version = new_version
            if quiet >= STREAM_HEARTBEAT_SECONDS:
                quiet = 0.0
                yield ": keep-alive\n\n"
    finally:
        _Streams.open -= 1


@router.get("/{record_id}")
async def call_detail(
    _: Authorized,
    record_id: Annotated[str, Path(max_length=64)],
    records: RecordsDep,
    bridge: BridgeDep,
    transcript: bool = False,
) -> JSONResponse:
    """One record and its timeline; `transcript=true` adds the conversation from Ultravox."""
    async with reading(records) as session:
        found = await repository.get_call(session, record_id)
    if found is None:
        raise APIError(404, "no call record with this id")
    record, timeline = found
    body: dict[str, Any] = {
        "call": record_json(record),
        "timeline": [event_json(event) for event in timeline],
    }
    if transcript:
        body.update(await _transcript(bridge.ultravox, record))
    return JSONResponse(body)


async def _transcript(ultravox: Any, record: CallRecord) -> dict[str, Any]:
    if record.ultravox_call_id is None:
        return {"transcript": None, "transcriptError": "the call has no Ultravox call"}
    try:
        messages = await ultravox.call_messages(record.ultravox_call_id)
    except UltravoxError as exc:
        logger.warning(
            "records.transcript_failed",
            extra={"fields": {"ultravox_call_id": record.ultravox_call_id, "error": str(exc)}},
        )
        return {"transcript": None, "transcriptError": f"Ultravox: {str(exc)[:200]}"}
    return {"transcript": [_message(message) for message in messages]}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = str(message.get("role") or "").removeprefix("MESSAGE_ROLE_").lower()
    return {
        "role": role,
        "text": message.get("text"),
        "toolName": message.get("toolName"),
        "medium": message.get("medium"),
        "timespan": message.get("timespan"),
    }
