"""What tells an operator what is wrong: the 403 log line names the URL the signature was
checked against, and `simulate` explains that a /fallback URL always answers the fallback."""

import io

import httpx
import pytest
import respx

from app.providers import SIMULATORS
from app.simulate.send import simulate
from tests.conftest import (
    BASE_URL,
    PLIVO_TOKEN,
    TWILIO_TOKEN,
    Lines,
    make_settings,
    plivo_fields,
    plivo_webhook,
    running_app,
    twilio_fields,
    twilio_webhook,
)


def refused_line(log_lines: Lines) -> dict[str, object]:
    return log_lines.event("webhook.refused")


async def test_a_403_names_the_url_the_signature_was_checked_against(
    log_lines: Lines,
) -> None:
    # Signed for the public URL, checked against the one the service sees: the usual mistake.
    webhook = twilio_webhook(twilio_fields(), signed_base="https://bridge.example.com")
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)

    assert response.status_code == 403
    line = refused_line(log_lines)
    assert (line["outcome"], line["url"]) == ("forbidden", f"{BASE_URL}/twilio/incoming")


async def test_a_403_url_keeps_the_public_base_and_hides_the_query(log_lines: Lines) -> None:
    webhook = plivo_webhook(plivo_fields(), method="GET", token="wrong-token")
    settings = make_settings(public_base_url="https://bridge.example.com")
    async with running_app(settings) as client:
        response = await webhook.send(client)

    assert response.status_code == 403
    assert refused_line(log_lines)["url"] == "https://bridge.example.com/plivo/incoming?***"


async def test_other_refusals_carry_no_url(log_lines: Lines) -> None:
    async with running_app(make_settings()) as client:
        response = await client.post(
            "/twilio/incoming", content=b"x" * (65 * 1024), headers={"X-Twilio-Signature": "x"}
        )
    assert response.status_code == 413
    assert "url" not in refused_line(log_lines)


@pytest.mark.parametrize("name", ["twilio", "plivo"])
async def test_simulating_the_fallback_url_says_it_always_falls_back(
    name: str, ultravox: respx.MockRouter
) -> None:
    secrets = {"twilio": TWILIO_TOKEN, "plivo": PLIVO_TOKEN}
    async with running_app(make_settings()) as client:
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
        simulation = await simulate(
            SIMULATORS[name](secrets[name]),
            f"{BASE_URL}/{name}/fallback",
            method="POST",
            transport=transport,
            progress=io.StringIO(),
        )

    assert simulation.verdict.name == "fallback"
    assert simulation.verdict.exit_status == 1
    assert f"/{name}/fallback is the provider's fallback URL, which answers with the fallback " in (
        simulation.verdict.explanation
    )
    assert simulation.verdict.explanation.endswith(f"To check a call, simulate /{name}/incoming.")
    assert "check ULTRAVOX_API_KEY" not in simulation.verdict.explanation
    assert not ultravox.calls
