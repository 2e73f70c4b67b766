"""FORWARDED_ALLOW_IPS is a setting like any other: read from `.env` too, and handed to
uvicorn, whose proxy-headers middleware then believes only those proxies."""

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx

from app.config import Settings, load_settings
from app.main import create_app
from app.server import uvicorn_config
from app.settings import ConfigError
from tests.conftest import (
    API_KEY,
    API_URL,
    TWILIO_TOKEN,
    created_call,
    twilio_fields,
    twilio_webhook,
)

PROXY = "10.0.0.7"
PUBLIC = "https://bridge.example.com"


@pytest.fixture
def dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Settings]:
    """Settings read from a `.env` holding the given lines, with nothing in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)

    def settings(lines: str) -> Settings:
        (tmp_path / ".env").write_text(
            f"ULTRAVOX_API_KEY={API_KEY}\nULTRAVOX_API_URL={API_URL}\n"
            f"TWILIO_AUTH_TOKEN={TWILIO_TOKEN}\n{lines}"
        )
        return load_settings()

    return settings


async def _webhook_via_proxy(settings: Settings) -> httpx.Response:
    """A Twilio webhook signed for the public https URL, arriving from the proxy over http
    with X-Forwarded-Proto, through the middleware uvicorn wraps the app in."""
    app = create_app(settings)
    config = uvicorn_config(app, settings)
    config.load()
    webhook = twilio_webhook(twilio_fields(), signed_base=PUBLIC)
    webhook.headers["X-Forwarded-Proto"] = "https"
    webhook.url = "http://bridge.example.com/twilio/incoming"  # as the proxy forwards it
    transport = httpx.ASGITransport(app=config.loaded_app, client=(PROXY, 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bridge.example.com") as client,
    ):
        return await webhook.send(client)


@pytest.mark.parametrize("trusted", [PROXY, "10.0.0.0/8", "*"])
async def test_forwarded_allow_ips_in_dotenv_trusts_the_proxy(
    dotenv: Callable[[str], Settings], ultravox: respx.MockRouter, trusted: str
) -> None:
    settings = dotenv(f"FORWARDED_ALLOW_IPS={trusted}\n")
    ultravox.post("/calls").mock(return_value=created_call())

    response = await _webhook_via_proxy(settings)

    assert response.status_code == 200
    assert "<Stream" in response.text


async def test_an_untrusted_proxy_is_not_believed(
    dotenv: Callable[[str], Settings], ultravox: respx.MockRouter
) -> None:
    settings = dotenv("FORWARDED_ALLOW_IPS=10.0.0.8\n")
    calls = ultravox.post("/calls").mock(return_value=created_call())

    response = await _webhook_via_proxy(settings)

    assert response.status_code == 403
    assert calls.call_count == 0


def test_forwarded_allow_ips_must_be_addresses(dotenv: Callable[[str], Settings]) -> None:
    with pytest.raises(ConfigError) as raised:
        dotenv("FORWARDED_ALLOW_IPS=proxy.internal\n")
    assert str(raised.value) == (
        "invalid configuration:\n  FORWARDED_ALLOW_IPS: 'proxy.internal' is not an IP address "
        "or network: list the addresses of your proxies, comma-separated, such as "
        "10.0.0.0/8,127.0.0.1 (* trusts anyone)"
    )
