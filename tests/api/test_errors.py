"""Errors become responses in one place (app/api/errors.py): providers get the reason as plain
text, API clients get JSON, and every answer still carries its request id."""

import httpx
import respx

from app.api.errors import EXCEPTION_HANDLERS, APIError
from app.calltypes import WebhookError
from app.outbound.errors import OutboundError
from tests.conftest import running_app
from tests.outbound_mocks import AUTH, outbound_settings


def test_the_mapping_covers_every_kind_of_refusal() -> None:
    assert set(EXCEPTION_HANDLERS) == {WebhookError, APIError, OutboundError}


async def test_a_refused_webhook_is_plain_text_with_its_request_id(
    client: httpx.AsyncClient, ultravox: respx.MockRouter
) -> None:
    response = await client.post("/twilio/incoming", headers={"X-Request-ID": "req-1"})

    assert response.status_code == 403
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "missing X-Twilio-Signature\n"
    assert response.headers["x-request-id"] == "req-1"
    assert not ultravox.calls


async def test_an_unknown_provider_is_404_plain_text(client: httpx.AsyncClient) -> None:
    response = await client.post("/nobody/incoming")

    assert (response.status_code, response.text) == (404, "unknown provider 'nobody'\n")


async def test_events_of_a_provider_without_them_are_404_plain_text(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/twilio/events")

    assert (response.status_code, response.text) == (404, "no events endpoint for 'twilio'\n")


async def test_an_oversized_api_request_is_413_json(ultravox: respx.MockRouter) -> None:
    async with running_app(outbound_settings()) as client:
        response = await client.post("/calls", content=b"x" * (64 * 1024 + 1), headers=AUTH)

    assert response.status_code == 413
    assert response.json() == {"detail": "body over 65536 bytes"}
    assert not ultravox.calls


async def test_an_api_request_without_a_token_is_401_json(ultravox: respx.MockRouter) -> None:
    async with running_app(outbound_settings()) as client:
        response = await client.post("/calls", json={"provider": "twilio", "to": "+15005550006"})

    assert response.status_code == 401
    assert response.json() == {
        "detail": "a valid API token is required: send Authorization: Bearer <token>"
    }
    assert response.headers["www-authenticate"] == 'Bearer realm="ultravox-bridge"'


async def test_an_invalid_api_request_is_422_json_naming_the_field(
    ultravox: respx.MockRouter,
) -> None:
    async with running_app(outbound_settings()) as client:
        response = await client.post("/calls", json={"provider": "twilio"}, headers=AUTH)

    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"type": "missing", "loc": ["to"], "msg": "Field required"}]
    }
