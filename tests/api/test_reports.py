"""An answered webhook's log line, metrics and call record come a moment after its answer,
together with those of the webhooks answered meanwhile (app/api/webhooks.py, `Reports`).

The other tests read webhooks through `tests.conftest.ReportingASGITransport`, which makes the
reports as soon as each answer is read; these read them through httpx's own transport, as a
provider's request would be served."""

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import respx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from app.api.webhooks import REPORT_DELAY_SECONDS, Reports
from app.config import Settings
from app.main import create_app
from tests.conftest import (
    BASE_URL,
    CALL_ID,
    Lines,
    created_call,
    make_settings,
    twilio_fields,
    twilio_webhook,
)

# Scheduling on a shared machine: how late a report may come and still be "in time".
MARGIN_SECONDS = 1.0


def answered_count() -> float:
    value = REGISTRY.get_sample_value(
        "bridge_webhooks_total", {"provider": "twilio", "outcome": "answered"}
    )
    return value or 0.0


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan run (shut down when the block ends), read through httpx's
    own in-process transport, which leaves the reports to their timer."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield app, client


def recorded(settings: Settings) -> list[tuple[str, str, str]]:
    """The calls in the records database: provider call id, outcome, answered_at."""
    path = settings.database_url.get_secret_value().removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as database:
        rows = database.execute(
            "SELECT provider_call_id, outcome, answered_at FROM calls ORDER BY 1"
        )
        return [tuple(row) for row in rows]


async def test_a_webhook_is_logged_and_counted_a_moment_after_its_answer(
    ultravox: respx.MockRouter, log_lines: Lines
) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    counted = answered_count()
    async with served(make_settings()) as (_, client):
        webhook = twilio_webhook(twilio_fields())
        webhook.headers["X-Request-ID"] = "req-reported"
        response = await webhook.send(client)
        answered = time.monotonic()
        assert response.status_code == 200
        assert log_lines.named("webhook.answered") == []
        assert answered_count() == counted
        while not log_lines.named("webhook.answered"):
            assert time.monotonic() - answered < REPORT_DELAY_SECONDS + MARGIN_SECONDS
            await asyncio.sleep(0.002)
        (line,) = log_lines.named("webhook.answered")
        assert (line["request_id"], line["ultravox_call_id"]) == ("req-reported", CALL_ID)
        assert answered_count() == counted + 1


async def test_webhooks_answered_together_are_reported_together_each_with_its_request_id(
    ultravox: respx.MockRouter, log_lines: Lines
) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    async with served(make_settings()) as (app, client):
        app.state.reports.delay = 60  # only the flush below makes them

        async def send(n: int) -> int:
            webhook = twilio_webhook(twilio_fields(f"CA{n:032d}"))
            webhook.headers["X-Request-ID"] = f"req-{n}"
            return (await webhook.send(client)).status_code

        assert await asyncio.gather(*(send(n) for n in range(3))) == [200, 200, 200]
        assert log_lines.named("webhook.answered") == []
        app.state.reports.flush()
        reported = {
            line["request_id"]: line["call_id"] for line in log_lines.named("webhook.answered")
        }
    assert reported == {f"req-{n}": f"CA{n:032d}" for n in range(3)}


async def test_reports_pending_at_shutdown_are_made_and_recorded_before_the_records_close(
    ultravox: respx.MockRouter, log_lines: Lines
) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    settings = make_settings()
    async with served(settings) as (app, client):
        app.state.reports.delay = 60
        response = await twilio_webhook(twilio_fields("CA" + "5" * 32)).send(client)
        assert response.status_code == 200
        assert log_lines.named("webhook.answered") == []
    assert len(log_lines.named("webhook.answered")) == 1
    assert [row[:2] for row in recorded(settings)] == [("CA" + "5" * 32, "answered")]


async def test_the_record_has_the_time_of_the_answer_not_of_the_report(
    ultravox: respx.MockRouter,
) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    settings = make_settings()
    async with served(settings) as (app, client):
        app.state.reports.delay = 60
        response = await twilio_webhook(twilio_fields()).send(client)
        answered = time.time()
        assert response.status_code == 200
        await asyncio.sleep(1.0)
    ((_, _, answered_at),) = recorded(settings)
    stored = datetime.fromisoformat(answered_at).replace(tzinfo=UTC).timestamp()  # UTC, no zone
    assert abs(stored - answered) < 0.5, (answered_at, answered)


async def test_a_report_that_fails_does_not_cost_the_others_theirs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="app.api.webhooks")
    made: list[str] = []
    reports = Reports(delay=60)

    def broken() -> None:
        made.append("broken")
        raise RuntimeError("a bug in a report")

    reports.defer(lambda: made.append("first"))
    reports.defer(broken)
    reports.defer(lambda: made.append("third"))
    reports.flush()
    assert made == ["first", "broken", "third"]
    (failure,) = caplog.records
    assert failure.getMessage() == "webhook.report_failed"
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], RuntimeError)
    reports.flush()  # nothing is made twice
    assert made == ["first", "broken", "third"]


async def test_the_timer_makes_what_is_pending_once() -> None:
    made: list[int] = []
    reports = Reports(delay=0.01)
    reports.defer(lambda: made.append(1))
    reports.defer(lambda: made.append(2))
    await asyncio.sleep(0.01 + MARGIN_SECONDS / 4)
    assert made == [1, 2]
    reports.defer(lambda: made.append(3))  # a new timer for the next ones
    await asyncio.sleep(0.01 + MARGIN_SECONDS / 4)
    assert made == [1, 2, 3]
