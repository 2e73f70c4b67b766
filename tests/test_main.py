"""The application's start-up: the warnings it logs about settings that leave it exposed."""

import logging

import pytest

from tests.conftest import make_settings, running_app

PUBLIC_BASE_URL_UNSET = "startup.public_base_url_unset"


async def started_with(caplog: pytest.LogCaptureFixture, **settings: object) -> list[str]:
    caplog.set_level(logging.INFO, logger="app")
    async with running_app(make_settings(**settings)):
        pass
    return [record.getMessage() for record in caplog.records]


async def test_start_up_warns_when_public_base_url_is_unset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = await started_with(caplog)
    [record] = [r for r in caplog.records if r.getMessage() == PUBLIC_BASE_URL_UNSET]
    assert record.levelno == logging.WARNING
    assert record.fields == {  # type: ignore[attr-defined]
        "hint": "set PUBLIC_BASE_URL to the https origin in the providers' consoles; without it "
        "signatures are checked against the URL the request names, whose host the client chooses"
    }
    assert logged.count(PUBLIC_BASE_URL_UNSET) == 1


@pytest.mark.parametrize(
    "settings",
    [{"public_base_url": "https://bridge.example.com"}, {"verify_signatures": False}],
    ids=["public_base_url_set", "signatures_off"],
)
async def test_start_up_does_not_warn_when_the_url_is_set_or_nothing_is_signed(
    settings: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    assert PUBLIC_BASE_URL_UNSET not in await started_with(caplog, **settings)
