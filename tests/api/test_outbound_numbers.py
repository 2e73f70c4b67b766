"""Outbound numbers are dialled as given, so they must be E.164 with the + and country code:
a number without them would be read with a guessed country (415-555-0100 rang +41, Switzerland).
The API answers 422 and the `call` command refuses before sending anything."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx

from tests.conftest import running_app
from tests.outbound_mocks import (
    API_TOKEN,
    AUTH,
    CALLEE,
    OUR_NUMBER,
    outbound_settings,
    telnyx_accepts,
    ultravox_created,
)

WITHOUT_PLUS = ["415-555-0100", "5550006", "15005550006", "(500) 555-0006", "0041 44 668 18 00"]


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.mark.parametrize("number", WITHOUT_PLUS)
@pytest.mark.parametrize("field", ["to", "from"])
async def test_outbound_number_without_plus_is_refused(
    apis: respx.MockRouter, number: str, field: str
) -> None:
    body = {"provider": "twilio", "to": CALLEE, "from": OUR_NUMBER, field: number}
    async with running_app(outbound_settings()) as client:
        response = await client.post("/calls", json=body, headers=AUTH)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (
        [field],
        f"Value error, {number!r} is not a phone number in E.164 form (+, country code, "
        "number, such as +15005550100)",
    )
    assert not apis.calls


async def test_outbound_number_with_plus_and_separators_is_dialled_in_e164_form(
    apis: respx.MockRouter,
) -> None:
    created = ultravox_created(apis)
    dialled = telnyx_accepts(apis)
    body = {"provider": "telnyx", "to": "+1 (500) 555-0006"}
    async with running_app(outbound_settings()) as client:
        response = await client.post("/calls", json=body, headers=AUTH)

    assert response.status_code == 201
    assert response.json()["to"] == CALLEE
    assert created.call_count == 1
    assert json.loads(dialled.calls.last.request.read())["to"] == CALLEE


@pytest.mark.parametrize("option", ["--to", "--from"])
def test_call_command_refuses_a_number_without_plus_before_sending(
    tmp_path: Path, option: str
) -> None:
    numbers = {"--to": CALLEE, "--from": OUR_NUMBER, option: "5550006"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "call",
            "--provider",
            "twilio",
            "--token",
            API_TOKEN,
            "--url",
            "http://127.0.0.1:9",
            "--to",
            numbers["--to"],
            "--from",
            numbers["--from"],
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "", "PYTHONPATH": str(Path(__file__).parents[2])},
        timeout=60,
        check=False,
    )
    # Port 9 would refuse the connection (exit 1): exit 2 shows nothing was sent.
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {option}: '5550006' is not a phone number in E.164 form (+, country code, "
        "number, such as +15005550100)\n"
    )
