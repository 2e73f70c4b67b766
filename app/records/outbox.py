"""Events out: the end-of-call summary of each record, POSTed to CALL_EVENTS_URL and signed with
CALL_EVENTS_SECRET in Ultravox's webhook scheme (headers `X-Bridge-Webhook-Timestamp` and
`X-Bridge-Webhook-Signature`).

Summaries wait in the database (`call_event_deliveries`), so they survive restarts and any
replica may send them. A failed attempt (no answer, or not 2xx) is retried after 30 s, then
1, 2, 4 ... minutes (at most an hour apart), 10 attempts in all, then given up; each result is
on the record (`delivery`) and in `bridge_call_events_deliveries_total`."""

import asyncio
import logging
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.records import metrics, repository
from app.records.changes import TimelineEntry
from app.records.models import CallRecord, Delivery, utcnow
from app.records.service import CallRecords
from app.records.signing import sign
from app.records.summary import end_summary

logger = logging.getLogger("app.records")

MAX_ATTEMPTS = 10
FIRST_RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 3600.0
REQUEST_TIMEOUT_SECONDS = 10.0
# An attempt in progress holds its delivery this long; a replica that dies mid-attempt
# leaves it to another after that.
LEASE_SECONDS = 60.0
POLL_SECONDS = 1.0
BATCH = 20
TIMESTAMP_HEADER = "X-Bridge-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Bridge-Webhook-Signature"


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 30 s, then doubling."""
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2.0 ** (attempts - 1))


class Outbox:
    def __init__(
        self, records: CallRecords, http: httpx.AsyncClient, url: str, secrets: list[str]
    ) -> None:
        self._records = records
        self._http = http
        self._url = url
        self._secrets = secrets
        self._wake = asyncio.Event()
        records.on_call_ended(self._wake.set)

    async def run(self) -> None:
        while True:
            # Cleared before looking, not after: a call that ends while we look wakes the next
            # look instead of waiting for the poll.
            self._wake.clear()
            try:
                await self.send_due()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("outbox.failed", extra={"fields": {"error": repr(exc)[:300]}})
            # Woken by a call's end, or polling for retries and other replicas' summaries.
            try:
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def send_due(self, now: datetime | None = None) -> int:
        """Send every summary whose time has come; how many attempts were made."""
        now = now or utcnow()
        async with self._records.sessions() as session:
            due = await repository.due_deliveries(session, now, BATCH)
            pending = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
            )
        metrics.DELIVERIES_PENDING.set(pending or 0)
        sent = 0
        for delivery in due:
            body = await self._claim(delivery, now)
            if body is not None:
                await self._attempt(delivery, body)
                sent += 1
        return sent

    async def _claim(self, delivery: Delivery, now: datetime) -> bytes | None:
        async with self._records.sessions.begin() as session:
            lease = now + timedelta(seconds=LEASE_SECONDS)
            if not await repository.claim_delivery(session, delivery, lease):
                return None  # another replica took it
            if delivery.payload is None:
                record = await session.get(CallRecord, delivery.call_id)
                if record is None:
                    return None
                delivery.payload = end_summary(record).decode()
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == delivery.id)
                    .values(payload=delivery.payload)
                )
            return delivery.payload.encode()

    async def _attempt(self, delivery: Delivery, body: bytes) -> None:
        signed = sign(self._secrets, body, utcnow())
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: signed["timestamp"],
            SIGNATURE_HEADER: signed["signature"],
        }
        error: str | None = None
        try:
            response = await self._http.post(
                self._url, content=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
            )
            if not 200 <= response.status_code < 300:
                error = f"answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"no answer: {type(exc).__name__}"
        await self._settle(delivery, error)

    async def _settle(self, delivery: Delivery, error: str | None) -> None:
        now = utcnow()
        attempts = delivery.attempts + 1
        if error is None:
            status, result, next_at = "delivered", "delivered", now
        elif attempts >= MAX_ATTEMPTS:
            status, result, next_at = "failed", "failed", now
        else:
            status, result = "pending", "retry"
            next_at = now + timedelta(seconds=retry_delay(attempts))
        metrics.DELIVERIES.labels(result=result).inc()
        fields = {"call_record_id": delivery.call_id, "attempts": attempts, "result": result}
        level = logging.INFO if error is None else logging.WARNING
        logger.log(level, "outbox.attempt", extra={"fields": {**fields, "error": error}})
        async with self._records.sessions.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id)
                .values(
                    status=status,
                    attempts=attempts,
                    next_attempt_at=next_at,
                    last_error=error,
                    delivered_at=now if error is None else None,
                )
            )
            await session.execute(
                update(CallRecord)
                .where(CallRecord.id == delivery.call_id)
                .values(
                    delivery_status=status,
                    delivery_attempts=attempts,
                    delivery_error=error,
                    updated_at=now,
                )
            )
            detail = {"attempt": attempts, "error": error} if error else {"attempt": attempts}
            await repository.add_timeline(
                session,
                delivery.call_id,
                TimelineEntry(now, "delivery", f"summary.{result}", detail),
            )
