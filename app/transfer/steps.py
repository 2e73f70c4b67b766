"""Every step of a transfer goes through `transfer_step`: one log line, one count in
`bridge_transfers_total`, and one `TransferStep` handed to whatever records steps on the call's
record (`record_transfer_steps`, the hook the call records register with)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app import metrics
from app.providers.transferring import Transfer
from app.records.changes import CallChange, TimelineEntry
from app.records.service import CallRecords

logger = logging.getLogger("app.transfer")

# Outcomes that mean the caller is not where they asked to go: logged as warnings.
TROUBLE = frozenset({"provider_error", "unanswered", "declined", "fallback"})


@dataclass(frozen=True)
class TransferStep:
    """One step of one transfer, as a call's record keeps it: which calls, what happened, when."""

    transfer_id: str
    provider: str
    provider_call_id: str
    ultravox_call_id: str
    route: str
    target: str
    mode: str
    outcome: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)


StepRecorder = Callable[[TransferStep], None]
_recorders: list[StepRecorder] = []


def record_transfer_steps(recorder: StepRecorder) -> Callable[[], None]:
    """Hand every transfer step to `recorder` from now on: the hook where call records keep
    transfers. It runs in the event loop, so it must not block (schedule a store write, do not
    wait for it); its failures are logged and never stop a transfer. Returns the function that
    unregisters it."""
    _recorders.append(recorder)
    return lambda: _recorders.remove(recorder)


def on_call_records(records: CallRecords) -> StepRecorder:
    """The recorder that notes each step on the timeline of the call being transferred, found
    by the Ultravox call the step came from or by the provider's call id (the agent a caller
    returns to is a new Ultravox call on the same phone call). It only queues the write."""

    def record(step: TransferStep) -> None:
        detail: dict[str, Any] = {
            "transferId": step.transfer_id,
            "target": step.target,
            "mode": step.mode,
            "route": step.route,
            **{_camel(name): value for name, value in step.details.items() if value is not None},
        }
        records.record(
            CallChange(
                at=step.at,
                ultravox_call_id=step.ultravox_call_id or None,
                provider=step.provider,
                provider_call_ids=(step.provider_call_id,) if step.provider_call_id else (),
                timeline=TimelineEntry(
                    step.at,
                    "transfer",
                    f"transfer.{step.outcome}",
                    detail,
                    # A step reported again (another replica, a repeated callback) lands once.
                    key=f"transfer:{step.transfer_id}:{step.outcome}",
                ),
            )
        )

    return record


def _camel(name: str) -> str:
    """`new_ultravox_call_id` -> `newUltravoxCallId`, as the timeline's other details read."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def transfer_step(transfer: Transfer, outcome: str, **details: Any) -> None:
    """Log, count and record one step of `transfer`: the one place that sees every step of
    every transfer, with the call's ids."""
    metrics.TRANSFERS.labels(provider=transfer.provider, mode=transfer.mode, outcome=outcome).inc()
    fields = {
        "transfer_id": transfer.id,
        "provider": transfer.provider,
        "call_id": transfer.provider_call_id,
        "ultravox_call_id": transfer.ultravox_call_id,
        "route": transfer.route,
        "target": transfer.target,
        "mode": transfer.mode,
        "to": transfer.destination,  # masked in the logs like every phone number
        "outcome": outcome,
        **details,
    }
    level = logging.WARNING if outcome in TROUBLE else logging.INFO
    logger.log(level, f"transfer.{outcome}", extra={"fields": fields})
    if _recorders:
        _record_on_call(
            TransferStep(
                transfer_id=transfer.id,
                provider=transfer.provider,
                provider_call_id=transfer.provider_call_id,
                ultravox_call_id=transfer.ultravox_call_id,
                route=transfer.route,
                target=transfer.target,
                mode=transfer.mode,
                outcome=outcome,
                at=datetime.now(UTC),
                details=dict(details),
            )
        )


def _record_on_call(step: TransferStep) -> None:
    for recorder in list(_recorders):
        try:
            recorder(step)
        except Exception as exc:  # a record lost is logged; the caller's transfer goes on
            logger.warning(
                "transfer.not_recorded_on_call",
                extra={"fields": {"transfer_id": step.transfer_id, "error": repr(exc)[:300]}},
            )
