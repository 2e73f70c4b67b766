"""Provider status callbacks, `/{provider}/status`: a call's progress (final status, duration,
hang-up cause), signed like the provider's webhooks and read by its adapter, written to the
call's record before the answer (a failed write gets a 503, which Telnyx retries at its
failover URL). Refusals are raised as webhook errors, answered by `app/api/errors.py`."""

import logging

from fastapi import APIRouter, Request, Response

from app.api.deps import BridgeDep, RecordsDep, SettingsDep
from app.api.errors import RecordsNotWritten
from app.api.webhooks import webhook_request
from app.calltypes import WebhookError, WebhookRequest
from app.inbound import UnknownProvider
from app.providers.base import ProviderAdapter
from app.records import metrics
from app.records.service import CallRecords, RecordsUnavailable
from app.records.sources import status_change

router = APIRouter(tags=["records"])
logger = logging.getLogger("app.records")

_RESULTS = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


async def record_status(
    records: CallRecords, adapter: ProviderAdapter, webhook: WebhookRequest
) -> Response:
    """Write a verified status report to its call's record: 204, or `RecordsNotWritten` (503)
    when the records are unavailable (the provider may retry)."""
    status = adapter.parse_status(webhook)
    try:
        applied = await records.apply_now(status_change(status))
    except RecordsUnavailable:
        metrics.STATUS_CALLBACKS.labels(provider=adapter.name, result="unavailable").inc()
        raise RecordsNotWritten("the call records are unavailable") from None
    result = "recorded" if applied is not None else "unknown_call"
    metrics.STATUS_CALLBACKS.labels(provider=adapter.name, result=result).inc()
    fields = {
        "provider": adapter.name,
        "call_id": status.call_ids[0],
        "status": status.status,
        "result": result,
    }
    logger.info("status_callback", extra={"fields": fields})
    return Response(status_code=204)


@router.api_route("/{provider}/status", methods=["GET", "POST"])
async def provider_status(
    provider: str,
    request: Request,
    bridge: BridgeDep,
    settings: SettingsDep,
    records: RecordsDep,
) -> Response:
    """A provider's status callback for a call: its final status, duration and hang-up cause."""
    adapter = bridge.adapters.get(provider)
    if adapter is None:
        raise UnknownProvider(f"unknown provider {provider[:40]!r}")
    try:
        webhook = await webhook_request(request, settings.public_base_url)
        adapter.check(webhook)
        return await record_status(records, adapter, webhook)
    except RecordsNotWritten:
        raise  # counted by record_status
    except WebhookError as exc:
        metrics.STATUS_CALLBACKS.labels(
            provider=provider, result=_RESULTS.get(exc.status_code, "unavailable")
        ).inc()
        fields = {"provider": provider, "status": exc.status_code, "reason": str(exc)[:300]}
        logger.warning("status_callback.refused", extra={"fields": fields})
        raise
