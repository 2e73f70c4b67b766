"""`check-config` reports every problem in one pass (settings, routes file, providers), flags
setups that cannot take calls, and with `--online` checks the Ultravox key and Redis with one
request each."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import respx

from app.cli import main
from app.config import Settings, load_settings
from app.main import create_app
from app.settings import ConfigError
from tests.conftest import API_KEY, API_URL, make_settings
from tests.redis_server import free_port

NO_PROVIDER = (
    "no provider can take calls: set TWILIO_AUTH_TOKEN, TELNYX_PUBLIC_KEY, PLIVO_AUTH_TOKEN, "
    "VONAGE_SIGNATURE_SECRET (with PUBLIC_BASE_URL) or ASTERISK_TOKEN"
)
BAD_ROUTES = "routes:\n  - number: '555-0002'\n    reject: true\n"
BAD_ROUTE_LINE = (
    "routes.yaml: routes[0]: number: '555-0002' is not a phone number in E.164 form (+, country "
    "code, number, such as +15005550100)"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("ULTRAVOX_API_KEY", API_KEY)
    monkeypatch.setenv("ULTRAVOX_API_URL", API_URL)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "twilio-test-token")


def test_settings_and_routes_file_mistakes_are_reported_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "routes.yaml").write_text(BAD_ROUTES)
    monkeypatch.setenv("PUBLIC_BASE_URL", "bridge.example.com")
    monkeypatch.setenv("ROUTES_FILE", "routes.yaml")

    assert main(["check-config"]) == 2
    assert capsys.readouterr() == (
        "",
        "invalid configuration:\n"
        "  PUBLIC_BASE_URL: must be the URL the providers call, such as "
        "https://bridge.example.com (no query string)\n"
        f"{BAD_ROUTE_LINE}\n",
    )


def test_a_missing_key_and_a_bad_routes_file_are_reported_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "routes.yaml").write_text(BAD_ROUTES)
    monkeypatch.delenv("ULTRAVOX_API_KEY")

    assert main(["check-config", "--routes-file", "routes.yaml"]) == 2
    assert capsys.readouterr().err == (
        "invalid configuration:\n  ULTRAVOX_API_KEY: is required: set it in the environment or "
        f"in .env (see .env.example)\n{BAD_ROUTE_LINE}\n"
    )


def test_a_service_without_any_provider_secret_is_flagged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")

    assert main(["check-config"]) == 2
    assert capsys.readouterr() == ("", f"{NO_PROVIDER}\n")


def test_an_asterisk_token_alone_takes_calls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    monkeypatch.setenv("ASTERISK_TOKEN", "asterisk-test-token-0123456789")

    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith("settings: ok\n")


@pytest.mark.parametrize(("codec", "rate"), [("PCMU", 8000), ("PCMA", 8000), ("AMR-WB", 16000)])
def test_a_codec_at_a_rate_telnyx_cannot_stream_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], codec: str, rate: int
) -> None:
    wrong = 16000 if rate == 8000 else 8000
    monkeypatch.setenv("TELNYX_STREAM_CODEC", codec)
    monkeypatch.setenv("TELNYX_STREAM_SAMPLING_RATE", str(wrong))
    message = (
        f"invalid configuration:\n  settings: TELNYX_STREAM_CODEC={codec} streams at {rate} Hz "
        f"only, not TELNYX_STREAM_SAMPLING_RATE={wrong}: Telnyx could not stream any call. Set "
        f"TELNYX_STREAM_SAMPLING_RATE={rate}, or the codec L16"
    )

    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == message
    assert main(["check-config"]) == 2
    assert capsys.readouterr().err == message + "\n"
    monkeypatch.setenv("TELNYX_STREAM_SAMPLING_RATE", str(rate))
    assert main(["check-config"]) == 0


async def test_start_up_warns_when_no_provider_can_take_calls() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("app")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for settings in (
            make_settings(twilio_auth_token="", telnyx_public_key="", plivo_auth_token=""),
            make_settings(
                twilio_auth_token="",
                telnyx_public_key="",
                plivo_auth_token="",
                asterisk_token="asterisk-test-token-0123456789",
            ),
        ):
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                pass
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    assert stream.getvalue().splitlines().count("startup.no_provider_ready") == 1


# --- --online ----------------------------------------------------------------------------------


def test_online_check_accepts_a_working_key_and_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    with respx.mock(assert_all_called=True) as ultravox:
        account = ultravox.get(f"{API_URL}/accounts/me").respond(
            200, json={"accountId": "a-1", "name": "Test account", "freeTimeRemaining": "0s"}
        )
        assert main(["check-config", "--online"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "ultravox: ok: ULTRAVOX_API_KEY accepted (account 'Test account')",
        f"redis: ok: {redis_url} answered PING",
    ]
    assert account.call_count == 1
    assert account.calls.last.request.headers["X-API-Key"] == API_KEY


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (
            httpx.Response(401, json={"detail": "Invalid API key"}),
            "ultravox: FAILED: ULTRAVOX_API_KEY refused (401): copy a current key from the "
            "Ultravox console (Settings > API keys)",
        ),
        (
            httpx.Response(404),
            f"ultravox: FAILED: {API_URL}/accounts/me answered 404: is ULTRAVOX_API_URL "
            "Ultravox's API (https://api.ultravox.ai/api)?",
        ),
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            f"ultravox: FAILED: cannot reach {API_URL}/accounts/me (ConnectError: [Errno 111] "
            "Connection refused)",
        ),
    ],
    ids=["refused-key", "wrong-url", "unreachable"],
)
def test_online_check_explains_an_ultravox_failure(
    capsys: pytest.CaptureFixture[str], answer: httpx.Response | Exception, verdict: str
) -> None:
    with respx.mock() as ultravox:
        route = ultravox.get(f"{API_URL}/accounts/me")
        if isinstance(answer, Exception):
            route.mock(side_effect=answer)
        else:
            route.mock(return_value=answer)
        assert main(["check-config", "--online"]) == 2
    assert capsys.readouterr().out.splitlines()[-1] == verdict
    assert route.call_count == 1


def test_online_check_reports_redis_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:secret-password@127.0.0.1:{port}/0")
    with respx.mock() as ultravox:
        ultravox.get(f"{API_URL}/accounts/me").respond(200, json={"name": "Test"})
        assert main(["check-config", "--online"]) == 2
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"redis: FAILED: no answer to PING from redis://127.0.0.1:{port}/0 (")
    assert "secret-password" not in last


def test_without_online_nothing_is_requested(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock() as ultravox:  # any request would fail: no route is mocked
        assert main(["check-config"]) == 0
    assert not ultravox.calls
    assert "ultravox:" not in capsys.readouterr().out


def test_output_cut_short_by_head_gives_no_traceback(tmp_path: Path) -> None:
    # A table longer than a pipe holds, so `head -1` exits while check-config still writes.
    routes = "".join(f"  - number: '+1500555{n:04d}'\n    reject: true\n" for n in range(3000))
    (tmp_path / "routes.yaml").write_text(f"routes:\n{routes}")
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    env |= {"ULTRAVOX_API_KEY": API_KEY, "TWILIO_AUTH_TOKEN": "twilio-test-token"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [
            "sh",
            "-c",
            f"{sys.executable} -m app.cli check-config --routes-file routes.yaml | head -1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "settings: ok\n", "")
