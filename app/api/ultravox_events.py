"""`POST /ultravox/events`: Ultravox's account webhooks (call.started, call.joined, call.ended,
call.billed), checked against ULTRAVOX_WEBHOOK_SECRETS and written to the call's record before
the answer, so a failed write gets a 503 and Ultravox's retry (it retries non-2xx answers up to
10 times). Repeats are harmless: each event lands once on the timeline. Refusals are raised as
webhook errors, answered in plain text by `app/api/errors.py`."""

import json
import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from app.api.deps import RecordsDep, SettingsDep
from app.api.errors import RecordsNotWritten
from app.api.webhooks import read_body
from app.calltypes import MalformedWebhook, SignatureError, WebhookError
from app.records import metrics
from app.records.changes import CallChange
from app.records.service import RecordsUnavailable
from app.records.signing import BadSignature, verify
from app.records.sources import NotAnEvent, ultravox_event
from app.settings import ServiceSettings
from app.web.calls import RECORDED_PROVIDERS

router = APIRouter(tags=["records"])
logger = logging.getLogger("app.records")

# A call object with its summary fits in a few KiB; this leaves room without inviting floods.
MAX_BODY_BYTES = 256 * 1024
# Ultravox's docs: accept a webhook signed within about a minute of its arrival.
TIMESTAMP_TOLERANCE_SECONDS = 60
_RESULTS = {403: "forbidden", 400: "bad_request", 413: "too_large"}


class EventsNotConfigured(WebhookError):
    """No ULTRAVOX_WEBHOOK_SECRETS: no event can be verified."""

    status_code = 503


async def _verified_event(request: Request, settings: ServiceSettings) -> tuple[str, CallChange]:
    """The event's name and what it tells the records, from a body signed by Ultravox."""
    secrets = [secret.get_secret_value() for secret in settings.ultravox_webhook_secrets]
    if not secrets:
        raise EventsNotConfigured(
            "ULTRAVOX_WEBHOOK_SECRETS is not set: run `ultravox-bridge ultravox-webhook "
            "register --url https://<host>/ultravox/events` and set the secret it prints"
        )
    body = await read_body(request, MAX_BODY_BYTES)
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
        raise SignatureError(f"Ultravox webhook refused: {exc}") from None
    try:
        return ultravox_event(json.loads(body), RECORDED_PROVIDERS)
    except (NotAnEvent, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedWebhook(f"not an Ultravox call event: {str(exc)[:200]}") from None


@router.post("/ultravox/events")
async def ultravox_events(request: Request, settings: SettingsDep, records: RecordsDep) -> Response:
    """An Ultravox account webhook: the call's times, end reason, summary and billing."""
    event = "unknown"
    try:
        event, change = await _verified_event(request, settings)
        try:
            applied = await records.apply_now(change)
        except RecordsUnavailable:
            raise RecordsNotWritten("the call records are unavailable; retry later") from None
    except WebhookError as exc:
        result = _RESULTS.get(exc.status_code, "unavailable")
        metrics.ULTRAVOX_EVENTS.labels(event=event, result=result).inc()
        fields = {"status": exc.status_code, "reason": str(exc)}
        logger.warning("ultravox_event.refused", extra={"fields": fields})
        raise
    result = "recorded" if applied is not None else "unknown_call"
    metrics.ULTRAVOX_EVENTS.labels(event=event, result=result).inc()
    fields = {"event": event, "ultravox_call_id": change.ultravox_call_id, "result": result}
    logger.info("ultravox_event", extra={"fields": fields})
    return Response(status_code=204)
