"""`transfer_step` hands every step to the recorders registered with `record_transfer_steps`
(where call records keep transfers); a recorder that fails never stops a transfer."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import respx

from app.transfer.steps import TransferStep, record_transfer_steps
from tests.conftest import PROVIDERS, running_app
from tests.transfer.conftest import (
    FIRST_CALL,
    SECOND_CALL,
    TWILIO_API,
    TWILIO_SID,
    answer_call,
    call_tool,
    form_of,
    transfer_id_in,
    transfer_settings,
    ultravox_creates,
    ultravox_history,
)
from tests.transfer.test_twilio import CALLER_SID, callback

TWILIO = PROVIDERS[0]


@pytest.fixture
def recorded() -> Iterator[list[TransferStep]]:
    steps: list[TransferStep] = []
    stop = record_transfer_steps(steps.append)
    yield steps
    stop()


async def test_every_step_of_a_transfer_reaches_the_call_record_hook(
    tmp_path: Path, apis: respx.MockRouter, recorded: list[TransferStep]
) -> None:
    creates = ultravox_creates(apis)
    ultravox_history(apis)
    calls = f"{TWILIO_API}/2010-04-01/Accounts/{TWILIO_SID}/Calls"
    update = apis.post(f"{calls}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    before = datetime.now(UTC)
    async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
        access = await answer_call(client, TWILIO, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(form_of(update.calls.last.request)["Twiml"])
        await callback(transfer_id, "dialed", DialCallStatus="busy").send(client)

    assert [step.outcome for step in recorded] == ["requested", "started", "unanswered", "returned"]
    first = recorded[0]
    assert first == TransferStep(
        transfer_id=transfer_id,
        provider="twilio",
        provider_call_id=CALLER_SID,
        ultravox_call_id=FIRST_CALL,
        route="support",
        target="sales",
        mode="cold",
        outcome="requested",
        at=first.at,
        details={"reason": "wants a quote"},
    )
    assert before <= first.at <= recorded[-1].at <= datetime.now(UTC)
    assert recorded[-1].details == {
        "status": "busy",
        "new_ultravox_call_id": SECOND_CALL,
        "messages": 3,
    }


async def test_a_failing_recorder_does_not_stop_the_transfer(
    tmp_path: Path, apis: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(step: TransferStep) -> None:
        raise RuntimeError("the records database is down")

    creates = ultravox_creates(apis)
    calls = f"{TWILIO_API}/2010-04-01/Accounts/{TWILIO_SID}/Calls"
    apis.post(f"{calls}/{CALLER_SID}.json").respond(200, json={"sid": CALLER_SID})
    stop = record_transfer_steps(broken)
    try:
        async with running_app(transfer_settings(tmp_path / "r.yaml")) as client:
            access = await answer_call(client, TWILIO, creates)
            with caplog.at_level("WARNING", logger="app.transfer"):
                response = await call_tool(client, access, "sales")
    finally:
        stop()
    assert response.json() == {"result": "transferring"}
    lost = [r for r in caplog.records if r.getMessage() == "transfer.not_recorded_on_call"]
    assert len(lost) == 2  # requested, started
