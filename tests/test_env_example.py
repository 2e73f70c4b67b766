"""Every setting `.env.example` documents can be set, through the environment and through
`.env`, with the value it shows (or a valid one where it shows none), and the app starts."""

import re
import shutil
from pathlib import Path

import httpx
import pytest

from app.call_command import CallCommandSettings
from app.config import Settings, load_settings
from app.main import create_app
from app.simulate.settings import SimulatorSettings
from tests.conftest import (
    AGENT_ID,
    API_KEY,
    API_URL,
    BASE_URL,
    PLIVO_TOKEN,
    TELNYX_PUBLIC_KEY,
    TWILIO_TOKEN,
)
from tests.outbound_mocks import PLIVO_AUTH_ID, TELNYX_API_KEY, TELNYX_CONNECTION_ID, TWILIO_SID

ROOT = Path(__file__).resolve().parent.parent
# `KEY=value` lines, commented out (`# KEY=value`) or not.
SETTING_LINE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$")
# Values for the settings the example leaves empty (secrets, ids): valid ones.
GIVEN = {
    "ULTRAVOX_API_KEY": API_KEY,
    "ULTRAVOX_AGENT_ID": AGENT_ID,
    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    "TELNYX_PUBLIC_KEY": TELNYX_PUBLIC_KEY,
    "PLIVO_AUTH_TOKEN": PLIVO_TOKEN,
    "TELNYX_PRIVATE_KEY": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    "VONAGE_SIGNATURE_SECRET": "vonage-test-signature-secret",
    "ASTERISK_TOKEN": "asterisk-test-token-0123456789",
    "BRIDGE_API_TOKENS": "outbound-token-0123456789",
    "TWILIO_ACCOUNT_SID": TWILIO_SID,
    "TELNYX_API_KEY": TELNYX_API_KEY,
    "TELNYX_CONNECTION_ID": TELNYX_CONNECTION_ID,
    "PLIVO_AUTH_ID": PLIVO_AUTH_ID,
    "BRIDGE_API_TOKEN": "outbound-token-0123456789",
    "EXOTEL_URL_TOKENS": "exotel-url-token-0123456789abcdefghijklmn",
    "EXOTEL_ALLOWED_IPS": "203.0.113.0/24",
    "EXOTEL_ACCOUNT_SID": "exampleaccount1",
    "EXOTEL_API_KEY": "exotel-api-key",
    "EXOTEL_API_TOKEN": "exotel-api-token",
    "EXOTEL_APP_ID": "123456",
    "ULTRAVOX_WEBHOOK_SECRETS": "ultravox-webhook-secret-0123456789",
    "CALL_EVENTS_SECRET": "call-events-secret-0123456789",
}
# Settings of the client commands (`simulate`, `call`), which the service does not read.
CLIENT_ONLY = (set(SimulatorSettings.model_fields) | set(CallCommandSettings.model_fields)) - set(
    Settings.model_fields
)


def documented_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = SETTING_LINE.match(line)
        if match:
            name, value = match.groups()
            settings[name] = GIVEN.get(name, value)
    return settings


def example_values(redis_url: str) -> dict[str, str]:
    values = documented_settings()
    values["ULTRAVOX_API_URL"] = API_URL  # never the real Ultravox, although nothing calls it
    values["REDIS_URL"] = redis_url
    return values


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the routes file the example names, and no setting in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields.keys() | CLIENT_ONLY:
        monkeypatch.delenv(name.upper(), raising=False)
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy/routes.example.yaml", tmp_path / "deploy/routes.yaml")
    return tmp_path


def test_every_documented_setting_is_read_by_someone() -> None:
    documented = {name.lower() for name in documented_settings()}
    assert documented - Settings.model_fields.keys() - CLIENT_ONLY == set()
    # ... and every setting of the service is documented.
    assert Settings.model_fields.keys() - documented == set()


async def _starts_and_is_ready(values: dict[str, str]) -> None:
    settings = load_settings()
    service_settings = {name for name in values if name.lower() in Settings.model_fields}
    assert {name.upper() for name in settings.model_fields_set} == service_settings
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 200


async def test_every_documented_setting_can_be_set_in_the_environment(
    workdir: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = example_values(redis_url)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    await _starts_and_is_ready(values)


async def test_every_documented_setting_can_be_set_in_dotenv(workdir: Path, redis_url: str) -> None:
    values = example_values(redis_url)
    (workdir / ".env").write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    await _starts_and_is_ready(values)


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"TELNYX_STREAM_SAMPLING_RATE": "8000", "TELNYX_STREAM_CODEC": "PCMU"}, None, None),
        ({"TELNYX_STREAM_SAMPLING_RATE": "24000"}, "telnyx_stream_sampling_rate", 24000),
        ({"VONAGE_SAMPLE_RATE": "8000"}, "vonage_sample_rate", 8000),
        ({"VONAGE_SAMPLE_RATE": " 16000 "}, "vonage_sample_rate", 16000),
        ({"LOG_LEVEL": "info"}, "log_level", "INFO"),
        ({"LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ],
)
def test_numbers_and_levels_are_read_from_text(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    field: str | None,
    expected: object,
) -> None:
    monkeypatch.setenv("ULTRAVOX_API_KEY", API_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    if field is None:
        assert (settings.telnyx_stream_codec, settings.telnyx_stream_sampling_rate) == (
            "PCMU",
            8000,
        )
    else:
        assert getattr(settings, field) == expected
