"""What the call flows and event sources tell the records: a `CallChange` names the call (by
record id, Ultravox call id or provider call id), the facts learnt, and one timeline entry.

Changes arrive in any order (a provider's status callback may beat the webhook's record to
the database, Ultravox repeats its webhooks), so applying them is order-independent: identity
fields and first times are kept once set, the end is the first end reported, and a repeated
timeline entry (same `key`) is stored once."""

import functools
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Outcomes: what the bridge did with the call.
ANSWERED = "answered"
DUPLICATE = "duplicate"
FALLBACK = "fallback"
REJECTED = "rejected"
REFUSED_OVER_LIMIT = "refused-over-limit"
FAILED = "failed"  # outbound: Ultravox or the provider did not place the call
PENDING = "pending"  # known from an event before the bridge's own decision was stored
OUTCOMES = (ANSWERED, DUPLICATE, FALLBACK, REJECTED, REFUSED_OVER_LIMIT, FAILED, PENDING)
# A webhook's outcome that is not a record's: a repeat of a call answered longer ago than the
# join window (a replay, most likely), answered with the reject verb. It is noted on the call's
# timeline and changes nothing else: the call it repeats goes on.
LATE_REPEAT = "late_repeat"

# The timeline entry of a transfer to a person starting (app/transfer/steps.py writes
# `transfer.<outcome>`). From then on the phone call outlives the agent's Ultravox call: only the
# provider's end report (or the deadline) ends the call's record.
TRANSFER_STARTED = "transfer.started"

# Fields kept once set: the first report wins, later ones cannot rewrite history.
FIRST_WINS = frozenset(
    {
        "provider_call_id",
        "ultravox_call_id",
        "route",
        "caller",
        "called",
        "answered_at",
        "joined_at",
        "end_reason",
        "expires_at",
    }
)
# Fields a later report refines (a provider's final status, billing settled after the end).
LATEST_WINS = frozenset(
    {
        "provider_status",
        "hangup_cause",
        "duration_seconds",
        "billed_duration_seconds",
        "billing_status",
        "short_summary",
    }
)
FIELDS = FIRST_WINS | LATEST_WINS

_RECORD_NAMESPACE = uuid.UUID("6f0c1b7e-2a3d-4c5b-9e8f-0a1b2c3d4e5f")
_NAMESPACE_BYTES = _RECORD_NAMESPACE.bytes


def record_id_for(provider: str, provider_call_id: str) -> str:
    """The record id of a provider's call: the same on every replica, so two replicas writing
    the same call's record meet on one row."""
    return _record_id(provider, provider_call_id)


@functools.lru_cache(maxsize=4096)
def _record_id(provider: str, provider_call_id: str) -> str:
    """`str(uuid.uuid5(_RECORD_NAMESPACE, f"{provider}:{provider_call_id}"))` (a test holds them
    equal), written out without the UUID object, whose checks and formatting cost a webhook
    more than the hash. Kept for the calls seen last: a webhook's admission, its decision and
    the writer each ask for the id."""
    name = f"{provider}:{provider_call_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def new_record_id() -> str:
    """The record id of a call without a provider id yet (outbound, before the dial)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class TimelineEntry:
    """One event of a call's life. `key` set: stored once however often it is reported."""

    at: datetime
    source: str  # bridge, ultravox, provider, relay, timeout, delivery
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


@dataclass(frozen=True)
class CallChange:
    """Facts about one call. A call is found by `record_id`, then `ultravox_call_id`, then
    (`provider`, any of `provider_call_ids`); `create` makes the record when none is found
    (it then needs `provider` and `direction`)."""

    at: datetime
    record_id: str | None = None
    ultravox_call_id: str | None = None
    provider: str | None = None
    provider_call_ids: tuple[str, ...] = ()
    create: bool = False
    direction: str | None = None
    outcome: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    ends: bool = False
    ended_by: str | None = None
    # Ultravox's joined-to-ended time: the duration when no provider reports the call's own.
    agent_duration_seconds: float | None = None
    timeline: TimelineEntry | None = None

    def __post_init__(self) -> None:
        unknown = set(self.fields) - FIELDS
        if unknown:
            raise ValueError(f"not record fields: {sorted(unknown)}")
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")


@dataclass(frozen=True)
class Applied:
    """What applying a change did: the record it touched, whether the call ended now, and
    whether its live-call slot is free although the call goes on (`agent_left`: the Ultravox
    call the slot was taken for ended after the caller went to a person)."""

    record_id: str
    route: str | None
    ended_now: bool
    agent_left: bool = False
