"""`CallRecords`: the one object the call flows and endpoints use to record calls and hold
live-call slots. It owns the database engine and three background tasks:

- the writer, which drains the queue of changes from the call flows (a webhook's answer never
  waits for the database: `record` only queues; a full queue or a failed write is counted in
  `bridge_records_lost_total`, and the call goes on);
- the upkeep, which closes calls whose end was never reported and purges old records;
- the outbox sender (app/records/outbox.py), when CALL_EVENTS_URL is set."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.records import metrics, repository
from app.records.changes import Applied, CallChange, TimelineEntry
from app.records.database import upgrade
from app.records.limits import LiveCalls
from app.records.models import utcnow

logger = logging.getLogger("app.records")

QUEUE_SIZE = 10_000
BATCH_SIZE = 200
# How long the writer lets changes gather before it writes them: a batch costs about the same
# few queries whatever its size, so under load one write stores many calls (docs/benchmarks.md).
GATHER_SECONDS = 0.2
# How long `apply_now` (events in) may wait for the database before the sender is told to retry.
APPLY_TIMEOUT_SECONDS = 5.0
UPKEEP_INTERVAL_SECONDS = 15.0
PURGE_INTERVAL_SECONDS = 3600.0
# How long shutdown waits for queued changes to be written.
DRAIN_SECONDS = 5.0


class RecordsUnavailable(Exception):
    """The database did not take a change in time (events in answer 503: the sender retries)."""


class CallRecords:
    def __init__(
        self,
        engine: AsyncEngine,
        live_calls: LiveCalls,
        *,
        retention_days: int,
        outbox_delay: float | None,
    ) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.live_calls = live_calls
        self.retention_days = retention_days
        self.outbox_delay = outbox_delay
        self._queue: asyncio.Queue[CallChange] = asyncio.Queue(QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self._ended_listeners: list[Callable[[], None]] = []
        self.version = 0
        self.migrated = False

    # --- the call flows' side: never waits for the database -----------------------------

    def record(self, change: CallChange) -> None:
        """Queue `change` for the writer; returns at once."""
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            metrics.RECORDS_LOST.labels(reason="queue_full").inc()
            return
        metrics.RECORDS_QUEUED.set(self._queue.qsize())

    def on_call_ended(self, listener: Callable[[], None]) -> None:
        """Call `listener` after a write ended a call (the outbox sender wakes up)."""
        self._ended_listeners.append(listener)

    # --- events in: written before the sender gets its answer ---------------------------

    async def apply_now(self, change: CallChange) -> Applied | None:
        """Write `change` now; None when it names no known call and creates none.
        `RecordsUnavailable` when the database fails or is too slow."""
        try:
            async with asyncio.timeout(APPLY_TIMEOUT_SECONDS):
                applied = await self._write([change])
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            logger.warning("records.write_failed", extra={"fields": {"error": repr(exc)[:300]}})
            raise RecordsUnavailable(str(exc)[:300]) from exc
        await self._after(applied)
        return applied[0]

    # --- background ---------------------------------------------------------------------

    async def migrate(self) -> bool:
        """Bring the schema up to date. A database that cannot be reached does not stop the
        service (calls go on, their records are counted lost); upkeep tries again."""
        try:
            async with asyncio.timeout(APPLY_TIMEOUT_SECONDS * 2):
                await upgrade(self.engine)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            logger.error(
                "records.database_unavailable",
                extra={"fields": {"error": repr(exc)[:300], "hint": "check DATABASE_URL"}},
            )
            return False
        self.migrated = True
        return True

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._writer(), name="records-writer"),
            asyncio.create_task(self._upkeep(), name="records-upkeep"),
        ]

    def add_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.append(task)

    async def close(self) -> None:
        """Write what is queued (for a few seconds at most), stop the tasks, let go."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.live_calls.close()
        await self.engine.dispose()

    async def wait_for_change(self, seen: int, wait_seconds: float) -> int:
        """Wait until a write after version `seen`, or `wait_seconds`; the version now."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_seconds):
                    await self._changed.wait_for(lambda: self.version != seen)
            return self.version

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < BATCH_SIZE:
                await asyncio.sleep(GATHER_SECONDS)
            while len(batch) < BATCH_SIZE and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                metrics.RECORDS_QUEUED.set(self._queue.qsize())

    async def _write_batch(self, batch: list[CallChange]) -> None:
        started = time.perf_counter()
        try:
            applied = await self._write(batch)
        except (SQLAlchemyError, OSError) as exc:
            # One bad change (or a row another replica inserted first) must not cost the batch.
            logger.warning(
                "records.batch_failed",
                extra={"fields": {"changes": len(batch), "error": repr(exc)[:300]}},
            )
            applied = []
            for change in batch:
                try:
                    applied += await self._write([change])
                except (SQLAlchemyError, OSError) as one:
                    metrics.RECORDS_LOST.labels(reason="database").inc()
                    logger.warning("records.lost", extra={"fields": {"error": repr(one)[:300]}})
        metrics.RECORD_WRITE_SECONDS.observe(time.perf_counter() - started)
        await self._after(applied)

    async def _write(self, changes: Sequence[CallChange]) -> list[Applied | None]:
        for attempt in (1, 2):
            try:
                async with self.engine.begin() as connection:
                    return await repository.apply(connection, changes, self.outbox_delay)
            except IntegrityError:
                if attempt == 2:
                    raise
                # Another replica made the record in between: this time it is found.
        raise AssertionError("unreachable")

    async def _after(self, applied: Sequence[Applied | None]) -> None:
        done = [item for item in applied if item is not None]
        metrics.RECORDS_WRITTEN.inc(len(done))
        ended = [item for item in done if item.ended_now]
        for item in done:
            if item.ended_now or item.agent_left:
                await self.live_calls.release(item.record_id, item.route)
        if ended:
            for listener in self._ended_listeners:
                listener()
        if done:
            async with self._changed:
                self.version += 1
                self._changed.notify_all()

    async def _upkeep(self) -> None:
        last_purge = 0.0
        while True:
            try:
                if not self.migrated and not await self.migrate():
                    await asyncio.sleep(UPKEEP_INTERVAL_SECONDS)
                    continue
                await self.close_overdue()
                if self.retention_days and time.monotonic() - last_purge > PURGE_INTERVAL_SECONDS:
                    await self.purge()
                    last_purge = time.monotonic()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("records.upkeep_failed", extra={"fields": {"error": repr(exc)}})
            await asyncio.sleep(UPKEEP_INTERVAL_SECONDS)

    async def close_overdue(self) -> int:
        """End the records of calls past their deadline whose end nobody reported."""
        now = utcnow()
        async with self.sessions() as session:
            overdue = await repository.overdue(session, now, BATCH_SIZE)
        changes = [
            CallChange(
                at=record.expires_at or now,
                record_id=record.id,
                ends=True,
                ended_by="timeout",
                timeline=TimelineEntry(
                    at=now,
                    source="bridge",
                    kind="closed.no_end_reported",
                    detail={"reason": "no end reported by the join timeout plus max duration"},
                    key="closed",
                ),
            )
            for record in overdue
        ]
        if changes:
            applied = await self._write(changes)
            metrics.CALLS_EXPIRED.inc(sum(1 for a in applied if a is not None and a.ended_now))
            await self._after(applied)
        return len(changes)

    async def purge(self) -> int:
        """Delete records older than CALL_RETENTION_DAYS."""
        before = utcnow() - timedelta(days=self.retention_days)
        async with self.sessions.begin() as session:
            removed = await repository.purge(session, before)
        if removed:
            logger.info("records.purged", extra={"fields": {"records": removed}})
        return removed

    def session(self) -> AsyncSession:
        return self.sessions()
