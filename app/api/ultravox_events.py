"""`POST /ultravox/events`: Ultravox's account webhooks (call.started, call.joined, call.ended,
call.billed), checked against ULTRAVOX_WEBHOOK_SECRETS and written to the call's record before
the answer, so a failed write gets a 503 and Ultravox's retry (it retries non-2xx answers up to
10 times). Repeats are harmless: each event lands once on the timeline."""

import json
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from app.api.deps import SettingsDep
from app.providers import PROVIDER_NAMES
from app.records import metrics
from app.records.service import CallRecords, RecordsUnavailable
from app.records.signing import BadSignature, verify
from app.records.sources import NotAnEvent, ultravox_event

router = APIRouter(tags=["records"])
logger = logging.getLogger("app.records")

# A call object with its summary fits in a few KiB; this leaves room without inviting floods.
MAX_BODY_BYTES = 256 * 1024
# Ultravox's docs: accept a webhook signed within about a minute of its arrival.
TIMESTAMP_TOLERANCE_SECONDS = 60


class BodyTooLarge(Exception):
    pass


async def get_records(request: Request) -> CallRecords:
    records: CallRecords = request.app.state.records
    return records


RecordsDep = Annotated[CallRecords, Depends(get_records)]


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def _answer(status: int, reason: str, event: str = "unknown") -> Response:
    result = {403: "forbidden", 400: "bad_request", 413: "too_large"}.get(status, "unavailable")
    metrics.ULTRAVOX_EVENTS.labels(event=event, result=result).inc()
    logger.warning("ultravox_event.refused", extra={"fields": {"status": status, "reason": reason}})
    return Response(f"{reason}\n", status, media_type="text/plain")


@router.post("/ultravox/events")
async def ultravox_events(request: Request, settings: SettingsDep, records: RecordsDep) -> Response:
    """An Ultravox account webhook: the call's times, end reason, summary and billing."""
    secrets = [secret.get_secret_value() for secret in settings.ultravox_webhook_secrets]
    if not secrets:
        return _answer(
            503,
            "ULTRAVOX_WEBHOOK_SECRETS is not set: run `ultravox-bridge ultravox-webhook "
            "register --url https://<host>/ultravox/events` and set the secret it prints",
        )
    try:
        body = await bounded_body(request, MAX_BODY_BYTES)
    except BodyTooLarge:
        return _answer(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        verify(
            secrets,
            body,
            request.headers.get("x-ultravox-webhook-timestamp"),
            request.headers.get("x-ultravox-webhook-signature"),
            datetime.now(UTC),
            TIMESTAMP_TOLERANCE_SECONDS,
        )
    except BadSignature as exc:
        return _answer(403, f"Ultravox webhook refused: {exc}")
    try:
        event, change = ultravox_event(json.loads(body), PROVIDER_NAMES)
    except (NotAnEvent, ValueError, UnicodeDecodeError) as exc:
        return _answer(400, f"not an Ultravox call event: {str(exc)[:200]}")
    try:
        applied = await records.apply_now(change)
    except RecordsUnavailable:
        return _answer(503, "the call records are unavailable; retry later", event)
    result = "recorded" if applied is not None else "unknown_call"
    metrics.ULTRAVOX_EVENTS.labels(event=event, result=result).inc()
    fields = {"event": event, "ultravox_call_id": change.ultravox_call_id, "result": result}
    logger.info("ultravox_event", extra={"fields": fields})
    return Response(status_code=204)
