"""Fixtures of the records tests: a real PostgreSQL beside SQLite, Ultravox's signed account
webhooks, and the settings that switch the records' features on."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.records.signing import signature
from tests.conftest import make_settings
from tests.postgres_server import PostgresNotInstalled, PostgresServer

UV_SECRET = "ultravox-webhook-secret-0001"
API_TOKEN = "records-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
EVENTS_URL = "https://receiver.test/call-events"
EVENTS_SECRET = "call-events-secret-0123456789"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
    except PostgresNotInstalled as exc:
        pytest.skip(f"no PostgreSQL for the records tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or the PostgreSQL server emptied."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    server.reset()
    return server.url


def records_settings(database_url: str | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ultravox_webhook_secrets": UV_SECRET,
        "bridge_api_tokens": API_TOKEN,
        "public_base_url": "http://bridge.test",
    }
    if database_url is not None:
        values["database_url"] = database_url
    values.update(overrides)
    return make_settings(**values)


def ultravox_event(
    event: str,
    call: dict[str, Any],
    secret: str = UV_SECRET,
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """An Ultravox account webhook as Ultravox signs it: HMAC-SHA256 of body + timestamp."""
    body = json.dumps({"event": event, "call": call}).encode()
    timestamp = (at or datetime.now(UTC)).isoformat()
    headers = {
        "content-type": "application/json",
        "X-Ultravox-Webhook-Timestamp": timestamp,
        "X-Ultravox-Webhook-Signature": signature(secret, body, timestamp),
    }
    return body, headers


async def send_event(
    client: httpx.AsyncClient, event: str, call: dict[str, Any], **kwargs: Any
) -> httpx.Response:
    body, headers = ultravox_event(event, call, **kwargs)
    return await client.post("/ultravox/events", content=body, headers=headers)


def uv_call(call_id: str, provider: str, provider_call_id: str, **fields: Any) -> dict[str, Any]:
    """An Ultravox Call object of a call the bridge created (its metadata names the phone call)."""
    return {
        "callId": call_id,
        "created": "2026-12-02T10:00:00Z",
        "metadata": {"provider": provider, "providerCallId": provider_call_id},
        **fields,
    }


async def flush(client: httpx.AsyncClient) -> None:
    """Wait until the writer has written what the call flows queued."""
    await client.app.state.records._queue.join()  # type: ignore[attr-defined]
