"""Ultravox's webhook signature scheme, used both ways: to check Ultravox's account webhooks,
and to sign the bridge's own end-of-call summaries so receivers verify both alike.

The signature is the lowercase hex HMAC-SHA256, keyed by a secret, of the raw body followed by
the timestamp header's value; a header may carry several comma-separated signatures (one per
secret, for rotation) and one match is enough."""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime


class BadSignature(Exception):
    """Missing, wrong or stale signature."""


def signature(secret: str, body: bytes, timestamp: str) -> str:
    return hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def sign(secrets: Sequence[str], body: bytes, now: datetime) -> dict[str, str]:
    """The timestamp and signature values for `body`, one signature per secret."""
    timestamp = now.astimezone(UTC).isoformat()
    return {
        "timestamp": timestamp,
        "signature": ",".join(signature(secret, body, timestamp) for secret in secrets),
    }


def verify(
    secrets: Sequence[str],
    body: bytes,
    timestamp: str | None,
    signatures: str | None,
    now: datetime,
    tolerance_seconds: float,
) -> None:
    """Raise `BadSignature` unless one of `signatures` is one secret's signature of `body` and
    `timestamp`, and `timestamp` is within `tolerance_seconds` of `now` either way."""
    if not timestamp or not signatures:
        raise BadSignature("missing signature or timestamp header")
    try:
        signed_at = datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadSignature("unreadable timestamp") from None
    if signed_at.tzinfo is None:
        signed_at = signed_at.replace(tzinfo=UTC)
    if abs((now - signed_at).total_seconds()) > tolerance_seconds:
        raise BadSignature("timestamp too old or in the future: a stale or replayed request")
    given = [part.strip().lower() for part in signatures.split(",") if part.strip()][:10]
    expected = [signature(secret, body, timestamp) for secret in secrets]
    # Every pair is compared, in constant time: the time taken tells nothing of a near match.
    matches = [hmac.compare_digest(g, e) for g in given for e in expected]
    if not any(matches):
        raise BadSignature("signature does not match")
