"""Liveness and readiness probes."""

import httpx

from tests.conftest import make_settings, running_app


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_lists_the_providers_that_can_take_calls(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "draining": False,
        "providers": {
            "twilio": True,
            "telnyx": True,
            "plivo": True,
            "vonage": False,
            "exotel": False,
        },
    }


async def test_readyz_is_503_when_no_provider_has_a_secret() -> None:
    settings = make_settings(twilio_auth_token="", telnyx_public_key="", plivo_auth_token="")
    async with running_app(settings) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["providers"] == {
        "twilio": False,
        "telnyx": False,
        "plivo": False,
        "vonage": False,
        "exotel": False,
    }


async def test_readyz_is_ok_without_secrets_when_signatures_are_off() -> None:
    settings = make_settings(
        verify_signatures=False, twilio_auth_token="", telnyx_public_key="", plivo_auth_token=""
    )
    async with running_app(settings) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
