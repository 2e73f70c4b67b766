"""What keeps records honest over time: a database outage never fails a call, summaries are
retried and survive a restart, calls whose end never comes are closed, old records go, and the
migrations match the models."""

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import respx
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from prometheus_client import REGISTRY
from sqlalchemy import Connection, select, update

from app.records.changes import CallChange
from app.records.database import (
    HEAD_REVISION,
    MIGRATIONS,
    create_engine,
    current_revision,
    upgrade,
)
from app.records.limits import MemoryLiveCalls
from app.records.models import Base, CallRecord, utcnow
from app.records.outbox import retry_delay
from app.records.service import CallRecords
from tests.conftest import (
    API_URL,
    JOIN_URL,
    created_call,
    running_app,
    twilio_fields,
    twilio_webhook,
)
from tests.records.conftest import AUTH, EVENTS_SECRET, EVENTS_URL, flush, records_settings

CALL_SID = "CA00000000000000000000000000000a01"


def lost(reason: str) -> float:
    return REGISTRY.get_sample_value("bridge_records_lost_total", {"reason": reason}) or 0.0


async def test_a_database_outage_never_fails_a_call() -> None:
    settings = records_settings("postgresql+asyncpg://bridge@127.0.0.1:1/bridge")
    before = lost("database")
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-out"))
        async with running_app(settings) as client:
            started = time.perf_counter()
            answer = await twilio_webhook(twilio_fields(CALL_SID)).send(client)
            elapsed = time.perf_counter() - started
            await flush(client)
            listing = await client.get("/api/calls", headers=AUTH)
    assert answer.status_code == 200 and "<Stream" in answer.text
    assert elapsed < 1.0
    assert lost("database") == before + 1
    assert listing.status_code == 503
    assert listing.json() == {"detail": "the call records database is unavailable; try again"}


def _delivery_settings(database_url: str) -> dict[str, object]:
    return {
        "call_events_url": EVENTS_URL,
        "call_events_secret": EVENTS_SECRET,
        "call_events_delay_seconds": 0,
        "database_url": database_url,
    }


async def ended_call(client: httpx.AsyncClient) -> str:
    records = client.app.state.records  # type: ignore[attr-defined]
    applied = await records.apply_now(
        CallChange(
            at=utcnow(),
            provider="twilio",
            provider_call_ids=(CALL_SID,),
            create=True,
            outcome="answered",
            ends=True,
            ended_by="ultravox",
        )
    )
    return str(applied.record_id)


async def test_failed_deliveries_are_retried_with_backoff_and_shown(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/calls.db"
    settings = records_settings(**_delivery_settings(url))  # type: ignore[arg-type]
    with respx.mock(assert_all_called=False) as mock:
        receiver = mock.post(EVENTS_URL).mock(
            side_effect=[httpx.Response(500), httpx.ConnectError("refused"), httpx.Response(200)]
        )
        async with running_app(settings) as client:
            outbox = client.app.state.outbox  # type: ignore[attr-defined]
            record_id = await ended_call(client)
            # The background sender tries at once (the call's end wakes it); the rest by hand.
            for _ in range(200):
                detail = (await client.get(f"/api/calls/{record_id}", headers=AUTH)).json()
                if detail["call"]["delivery"]["attempts"]:
                    break
                await asyncio.sleep(0.05)
            assert detail["call"]["delivery"] == {
                "status": "pending",
                "attempts": 1,
                "error": "answered 500",
            }
            assert await outbox.send_due(utcnow() + timedelta(seconds=retry_delay(1) + 1)) == 1
            assert await outbox.send_due(utcnow() + timedelta(seconds=retry_delay(2) + 200)) == 1
            detail = (await client.get(f"/api/calls/{record_id}", headers=AUTH)).json()
    assert receiver.call_count == 3
    bodies = {call.request.content for call in receiver.calls}
    assert len(bodies) == 1  # every retry sends the same summary
    assert detail["call"]["delivery"] == {"status": "delivered", "attempts": 3, "error": None}
    kinds = [event["kind"] for event in detail["timeline"]]
    assert kinds[-3:] == ["summary.retry", "summary.retry", "summary.delivered"]
    assert [retry_delay(n) for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]


async def test_a_pending_summary_survives_a_restart(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/calls.db"
    settings = records_settings(**_delivery_settings(url))  # type: ignore[arg-type]
    with respx.mock(assert_all_called=False) as mock:
        receiver = mock.post(EVENTS_URL).respond(503)
        async with running_app(settings) as client:
            record_id = await ended_call(client)
            # Until the refusal is stored: an attempt cut short by the shutdown would leave the
            # summary to its lease (a minute), not to the retry this test drives.
            for _ in range(200):
                detail = (await client.get(f"/api/calls/{record_id}", headers=AUTH)).json()
                if detail["call"]["delivery"]["attempts"]:
                    break
                await asyncio.sleep(0.05)
            assert receiver.call_count == 1
            assert detail["call"]["delivery"]["status"] == "pending"  # waiting for its retry
        receiver.respond(204)
        async with running_app(settings) as client:  # a new process, the same database
            outbox = client.app.state.outbox  # type: ignore[attr-defined]
            assert await outbox.send_due(utcnow() + timedelta(seconds=31)) == 1
            [call] = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
    assert call["delivery"]["status"] == "delivered"
    assert json.loads(receiver.calls.last.request.content)["call"]["providerCallId"] == CALL_SID


async def test_a_call_whose_end_never_comes_is_closed_and_frees_its_slot() -> None:
    settings = records_settings(max_concurrent_calls=1)
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-x"))
        async with running_app(settings) as client:
            await twilio_webhook(twilio_fields(CALL_SID)).send(client)
            await flush(client)
            records = client.app.state.records  # type: ignore[attr-defined]
            assert await records.close_overdue() == 0  # not due before its deadline
            async with records.sessions.begin() as session:
                await session.execute(
                    update(CallRecord).values(expires_at=utcnow() - timedelta(seconds=1))
                )
            assert await records.close_overdue() == 1
            [call] = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
            assert (call["state"], call["endedBy"]) == ("ended", "timeout")
            other = await twilio_webhook(twilio_fields("CA" + "b" * 32)).send(client)
    assert "<Stream" in other.text


async def test_a_deadline_given_in_another_zone_is_kept_as_its_instant(database_url: str) -> None:
    """Times are stored in UTC whatever zone they come in (SQLite keeps no zone and compares
    the text): one given at +02:00 reads back as the same instant, and is past when it is."""
    engine = create_engine(database_url)
    await upgrade(engine)
    records = CallRecords(engine, MemoryLiveCalls(None), retention_days=0, outbox_delay=None)
    deadline = (utcnow() - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2)))
    change = CallChange(
        at=deadline - timedelta(hours=1),
        record_id="in-another-zone",
        provider="twilio",
        create=True,
        fields={"expires_at": deadline},
    )
    try:
        await records._write([change])
        async with records.sessions() as session:
            record = await session.get(CallRecord, "in-another-zone")
        assert record is not None
        assert (record.expires_at, record.received_at) == (deadline, change.at)
        assert record.expires_at is not None and record.expires_at.tzinfo is UTC
        assert await records.close_overdue() == 1
    finally:
        await engine.dispose()


async def test_records_older_than_the_retention_are_purged(tmp_path: Path) -> None:
    # The records alone: the app's upkeep purges at start-up too, and would race this purge.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    records = CallRecords(engine, MemoryLiveCalls(None), retention_days=7, outbox_delay=None)
    assert await records.migrate()
    try:
        for days, sid in ((8, "old"), (6, "recent")):
            await records.apply_now(
                CallChange(
                    at=utcnow() - timedelta(days=days),
                    provider="twilio",
                    provider_call_ids=(sid,),
                    create=True,
                    outcome="answered",
                )
            )
        assert await records.purge() == 1
        async with records.session() as session:
            kept = (await session.execute(select(CallRecord.provider_call_id))).scalars().all()
    finally:
        await records.close()
    assert kept == ["recent"]


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrations_build_exactly_the_models_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second run finds nothing to do
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []


def test_the_head_revision_the_service_checks_is_the_newest_migration() -> None:
    """The start-up skips Alembic when the database is at HEAD_REVISION: a new migration
    must move it, or start-ups would never apply the migration."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


def test_a_database_at_the_head_starts_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/calls.db"

    async def migrate() -> str | None:
        engine = create_engine(url)
        try:
            await upgrade(engine)  # a new database: Alembic makes the schema
            async with engine.connect() as connection:
                return await connection.run_sync(current_revision)
        finally:
            await engine.dispose()

    assert asyncio.run(migrate()) == HEAD_REVISION
    code = (
        "import asyncio, sys\n"
        "from app.records.database import create_engine, upgrade\n"
        f"engine = create_engine({url!r})\n"
        "asyncio.run(upgrade(engine))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'alembic'))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "must be sqlite+aiosqlite:///path/to/calls.db"),
        ("sqlite+aiosqlite://", "must name a file"),
    ],
)
def test_unusable_database_urls_are_refused_at_start_up(url: str, message: str) -> None:
    from app.config import load_settings
    from app.settings import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, ultravox_api_key="k", database_url=url)
    assert "DATABASE_URL" in str(raised.value) and message in str(raised.value)


def test_a_postgres_url_means_the_async_driver() -> None:
    from app.config import load_settings

    settings = load_settings(_env_file=None, ultravox_api_key="k", database_url="postgres://h/db")
    assert settings.database_url.get_secret_value() == "postgresql+asyncpg://h/db"
