"""A provider that cannot be reached is explained in plain words in the API's answer and the
log, never with a library's exception repr."""

from collections.abc import Iterator

import httpx
import pytest
import responses
import respx

from tests.conftest import running_app
from tests.outbound_mocks import (
    AUTH,
    CALLEE,
    TELNYX_CALLS_URL,
    TWILIO_CALLS_URL,
    outbound_settings,
    ultravox_created,
    ultravox_deleted,
)


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def test_telnyx_timeout_is_explained_plainly(apis: respx.MockRouter) -> None:
    ultravox_created(apis)
    apis.post(TELNYX_CALLS_URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    async with running_app(outbound_settings()) as client:
        response = await client.post(
            "/calls", json={"provider": "telnyx", "to": CALLEE}, headers=AUTH
        )
    assert response.status_code == 504
    assert response.json()["detail"].startswith(
        "telnyx did not answer: no answer from Telnyx: it did not answer in time; it may still "
        "be dialling"
    )


def connection_refused() -> Exception:
    """What requests raises for a refused connection, with the OS error as urllib3 chains it."""
    from requests.exceptions import ConnectionError
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise NewConnectionError(None, "Failed to establish a new connection") from exc  # type: ignore[arg-type]
    except NewConnectionError as error:
        return ConnectionError(MaxRetryError(None, TWILIO_CALLS_URL, error))  # type: ignore[arg-type]


def name_not_resolved() -> Exception:
    from requests.exceptions import ConnectionError
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    unresolved = NameResolutionError("api.twilio.com", None, "Name or service not known")  # type: ignore[arg-type]
    return ConnectionError(MaxRetryError(None, TWILIO_CALLS_URL, unresolved))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (connection_refused(), "the connection was refused"),
        (name_not_resolved(), "its host name does not resolve"),
    ],
    ids=["refused", "not-resolved"],
)
async def test_twilio_that_cannot_be_reached_is_explained_plainly(
    apis: respx.MockRouter, error: Exception, reason: str
) -> None:
    ultravox_created(apis)
    ultravox_deleted(apis)
    with responses.RequestsMock() as requests_apis:
        requests_apis.add(responses.POST, TWILIO_CALLS_URL, body=error)
        async with running_app(outbound_settings()) as client:
            response = await client.post(
                "/calls", json={"provider": "twilio", "to": CALLEE}, headers=AUTH
            )
    assert response.status_code == 502
    assert (
        response.json()["detail"] == f"twilio could not be reached: cannot reach Twilio: {reason}"
    )
