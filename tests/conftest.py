"""Shared fixtures: settings, the app with its lifespan, and webhooks signed the way each
provider signs them (its own SDK's signing where it has one)."""

import atexit
import base64
import io
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import respx
from nacl.signing import SigningKey
from plivo.utils.signature_v3 import construct_get_url, construct_post_url, get_signature_v3
from twilio.request_validator import RequestValidator

from app import main as app_main
from app.config import Settings
from app.http_transport import CappedTransport
from app.logs import EventFormatter
from app.main import create_app
from tests.redis_server import RedisServer

# The tests' SQLite record databases, removed when the run ends.
_DATABASES = Path(tempfile.mkdtemp(prefix="bridge-test-records-"))
atexit.register(shutil.rmtree, _DATABASES, ignore_errors=True)

API_URL = "https://ultravox.test/api"
API_KEY = "test-ultravox-key-0123456789"
BASE_URL = "http://bridge.test"
JOIN_URL = "wss://voice.ultravox.test/calls/3f1c/join?token=abc&x=1"
CALL_ID = "3f1c2d4e-0000-4000-8000-000000000001"
AGENT_ID = "agent-1234"
CALLER = "+15005550006"
CALLED = "+15005550001"

TWILIO_TOKEN = "twilio-test-token"
PLIVO_TOKEN = "plivo-test-token"
TELNYX_KEY = SigningKey(b"\x01" * 32)
TELNYX_PUBLIC_KEY = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ultravox_api_key": API_KEY,
        "ultravox_api_url": API_URL,
        "twilio_auth_token": TWILIO_TOKEN,
        "telnyx_public_key": TELNYX_PUBLIC_KEY,
        "plivo_auth_token": PLIVO_TOKEN,
        "ultravox_deadline_seconds": 2,
        # Each app gets a database of its own, migrated at start-up.
        "database_url": f"sqlite+aiosqlite:///{_DATABASES / uuid.uuid4().hex}.db",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _ultravox_through_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """respx mocks Ultravox inside httpx's own transport; the service sends through its asyncio
    transport (tested against a loopback server in transport/test_asyncio_transport.py). So in
    tests the app sends through httpx's transport, under the same answer-size cap, and every
    respx mock sees the exact request the service built."""
    monkeypatch.setattr(
        app_main,
        "ultravox_transport",
        lambda: CappedTransport(httpx.AsyncHTTPTransport(limits=app_main.ULTRAVOX_LIMITS)),
    )


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, and a client that talks to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = ReportingASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


class Lines:
    """The service's log lines, as JSON objects."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def lines(self) -> list[str]:
        return self._stream.getvalue().splitlines()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.events() if line["event"] == name]

    def event(self, name: str) -> dict[str, Any]:
        (found,) = self.named(name)
        return found

    @property
    def text(self) -> str:
        return self._stream.getvalue()


@contextmanager
def capturing(logger: logging.Logger) -> Iterator[Lines]:
    """`logger`'s lines (and its children's) at INFO, formatted as in production (JSON, numbers
    masked, request id)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EventFormatter(as_json=True, mask_numbers=True))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield Lines(stream)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """The service's JSON log lines, formatted as in production (numbers masked, request id)."""
    with capturing(logging.getLogger("app")) as lines:
        yield lines


class ReportingASGITransport(httpx.ASGITransport):
    """httpx's in-process transport, which also makes the answered webhooks' reports
    (`app.api.webhooks.Reports`) as soon as each answer is read: a test then finds the log
    line, metrics and record of its webhook without waiting for them. tests/api/test_reports.py
    tests their delay."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        reports = getattr(self.app.state, "reports", None)  # type: ignore[attr-defined]
        if reports is not None:
            reports.flush()
        return response


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings()) as c:
        yield c


@pytest.fixture
def ultravox() -> respx.MockRouter:
    """Ultravox's API, mocked at the HTTP level; unmatched requests fail the test."""
    with respx.mock(base_url=API_URL, assert_all_called=False) as router:
        yield router


def created_call(join_url: str = JOIN_URL, call_id: str = CALL_ID) -> httpx.Response:
    return httpx.Response(
        201, json={"callId": call_id, "joinUrl": join_url, "created": "2026-11-24T10:00:00Z"}
    )


# --- webhooks as each provider sends them -------------------------------------------------


@dataclass
class Webhook:
    """One HTTP request as a provider would send it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        headers = dict(self.headers)
        if self.method == "POST":
            headers.setdefault("content-type", "application/x-www-form-urlencoded")
        return await client.request(self.method, self.url, headers=headers, content=self.content)


def _url(path: str, method: str, fields: dict[str, str], base: str = BASE_URL) -> str:
    url = base + path
    return f"{url}?{urlencode(fields)}" if method == "GET" else url


def twilio_webhook(
    fields: dict[str, str],
    method: str = "POST",
    path: str = "/twilio/incoming",
    token: str = TWILIO_TOKEN,
    signed_base: str = BASE_URL,
) -> Webhook:
    signed = _url(path, method, fields, signed_base)
    params = fields if method == "POST" else {}
    signature = RequestValidator(token).compute_signature(signed, params)
    body = urlencode(fields).encode() if method == "POST" else b""
    return Webhook(method, _url(path, method, fields), {"X-Twilio-Signature": signature}, body)


def telnyx_webhook(
    fields: dict[str, str],
    method: str = "POST",
    path: str = "/telnyx/incoming",
    key: SigningKey = TELNYX_KEY,
    timestamp: int | None = None,
) -> Webhook:
    body = urlencode(fields).encode() if method == "POST" else b""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + b"|" + body).signature
    headers = {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": ts,
    }
    return Webhook(method, _url(path, method, fields), headers, body)


def plivo_webhook(
    fields: dict[str, str],
    method: str = "POST",
    path: str = "/plivo/incoming",
    token: str = PLIVO_TOKEN,
    nonce: str = "12345678901234567890",
    signed_base: str = BASE_URL,
) -> Webhook:
    signed = _url(path, method, fields, signed_base)
    if method == "POST":
        base = construct_post_url(signed, dict(fields))
    else:
        base = construct_get_url(signed, {})
    signature = get_signature_v3(token.encode(), base.decode(), nonce.encode()).decode()
    headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
    body = urlencode(fields).encode() if method == "POST" else b""
    return Webhook(method, _url(path, method, fields), headers, body)


def twilio_fields(call_id: str = "CA0123456789abcdef0123456789abcdef") -> dict[str, str]:
    return {
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "ApiVersion": "2010-04-01",
        "CallSid": call_id,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": CALLER,
        "To": CALLED,
    }


def telnyx_fields(call_id: str = "v3:telnyx-call-0001") -> dict[str, str]:
    return {
        "AccountSid": "6b8e6a33-2d8c-4a59-9bb3-7d8f4b0a0001",
        "ApiVersion": "2010-04-01",
        "CallSid": call_id,
        "CallSidLegacy": "v3:legacy-0001",
        "CallStatus": "ringing",
        "ConnectionId": "1234567890",
        "From": CALLER,
        "To": CALLED,
    }


def plivo_fields(call_id: str = "8e6d1c4a-0000-4000-8000-00000000a001") -> dict[str, str]:
    return {
        "CallStatus": "ringing",
        "CallUUID": call_id,
        "Direction": "inbound",
        "From": CALLER.lstrip("+"),
        "To": CALLED.lstrip("+"),
    }


@dataclass(frozen=True)
class ProviderCase:
    """How to make a valid webhook for one provider, so tests can run for every provider."""

    name: str
    fields: Callable[..., dict[str, str]]
    webhook: Callable[..., Webhook]
    call_id_field: str


PROVIDERS = [
    ProviderCase("twilio", twilio_fields, twilio_webhook, "CallSid"),
    ProviderCase("telnyx", telnyx_fields, telnyx_webhook, "CallSid"),
    ProviderCase("plivo", plivo_fields, plivo_webhook, "CallUUID"),
]


@pytest.fixture(params=PROVIDERS, ids=lambda case: case.name)
def provider(request: pytest.FixtureRequest) -> ProviderCase:
    case: ProviderCase = request.param
    return case


# --- Redis, for the shared store --------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on loopback for the whole run, killed at the end."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server's URL, emptied for this test."""
    redis_server.flush()
    return redis_server.url
