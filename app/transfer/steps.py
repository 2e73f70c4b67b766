"""Every step of a transfer goes through `transfer_step`: one log line, one count in
`bridge_transfers_total`, and (once call records exist) one entry on the call's record."""

import logging
from typing import Any

from app import metrics
from app.providers.transferring import Transfer

logger = logging.getLogger("app.transfer")

# Outcomes that mean the caller is not where they asked to go: logged as warnings.
TROUBLE = frozenset({"provider_error", "unanswered", "declined", "fallback"})


def transfer_step(transfer: Transfer, outcome: str, **details: Any) -> None:
    """Log and count one step of `transfer`. The call-record store hooks in here: this is the
    one place that sees every step of every transfer, with the call's ids."""
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
