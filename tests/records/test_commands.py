"""`ultravox-bridge db upgrade` and `ultravox-bridge ultravox-webhook register`."""

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import respx

from app.cli import main
from tests.conftest import API_KEY, API_URL

HOOK_URL = "https://bridge.example.com/ultravox/events"
EVENTS = ["call.started", "call.joined", "call.ended", "call.billed"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("ULTRAVOX_API_KEY", API_KEY)
    monkeypatch.setenv("ULTRAVOX_API_URL", API_URL)
    database = tmp_path / "records" / "calls.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    return database


def test_db_upgrade_creates_the_schema(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == "database sqlite+aiosqlite: schema up to date\n"
    with sqlite3.connect(env) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
        version = connection.execute("select version_num from alembic_version").fetchone()
    assert {"calls", "call_events", "call_event_deliveries"} <= tables
    assert version == ("0001",)


def test_register_creates_the_webhook_and_prints_its_secret(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with respx.mock(base_url=API_URL) as mock:
        listing = mock.get("/webhooks").respond(200, json={"results": [], "next": None})
        created = mock.post("/webhooks").respond(
            201,
            json={"webhookId": "wh-1", "url": HOOK_URL, "events": EVENTS, "secrets": ["s3cret"]},
        )
        assert main(["ultravox-webhook", "register", "--url", HOOK_URL]) == 0
    assert listing.called
    assert created.calls.last.request.headers["x-api-key"] == API_KEY
    assert json.loads(created.calls.last.request.content) == {"url": HOOK_URL, "events": EVENTS}
    assert capsys.readouterr().out.splitlines() == [
        f"webhook wh-1 created: {HOOK_URL}",
        f"events: {', '.join(EVENTS)}",
        "put this in the service's settings (.env or the Secret), then restart it:",
        "ULTRAVOX_WEBHOOK_SECRETS=s3cret",
    ]


def test_register_updates_the_existing_webhook_with_a_new_secret(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = {"webhookId": "wh-2", "url": HOOK_URL, "events": ["call.ended"], "secrets": ["old"]}
    with respx.mock(base_url=API_URL) as mock:
        mock.get("/webhooks").respond(200, json={"results": [existing], "next": None})
        patched = mock.patch("/webhooks/wh-2").mock(
            side_effect=lambda request: httpx.Response(
                200, json={"webhookId": "wh-2", **json.loads(request.content)}
            )
        )
        assert main(["ultravox-webhook", "register", "--url", HOOK_URL, "--new-secret"]) == 0
    sent = json.loads(patched.calls.last.request.content)
    assert sent["events"] == EVENTS
    new, old = sent["secrets"]
    assert (len(new), old) == (64, "old")
    assert capsys.readouterr().out.splitlines()[-1] == f"ULTRAVOX_WEBHOOK_SECRETS={new},old"


def test_register_refuses_a_url_that_is_not_the_events_endpoint(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ultravox-webhook", "register", "--url", "http://x.test/hook"]) == 2
    assert "https://<your host>/ultravox/events" in capsys.readouterr().err


def test_register_says_what_ultravox_refused(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock(base_url=API_URL) as mock:
        mock.get("/webhooks").respond(403, json={"detail": "bad key"})
        assert main(["ultravox-webhook", "register", "--url", HOOK_URL]) == 1
    assert capsys.readouterr().err.startswith("Ultravox refused: Ultravox answered 403")


def test_register_reads_no_more_of_an_answer_than_the_service_does(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with respx.mock(base_url=API_URL) as mock:
        mock.get("/webhooks").respond(200, content=b"[" + b" " * (2 * 1024 * 1024) + b"]")
        assert main(["ultravox-webhook", "register", "--url", HOOK_URL]) == 1
    error = capsys.readouterr().err
    # Sent, then cut off: not "cannot reach", which would say the request never left.
    assert error.startswith("Ultravox refused: request to Ultravox failed: ")
    assert "is over 1048576 bytes" in error
