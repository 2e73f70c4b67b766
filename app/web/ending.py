"""Ending a web call from its page: the page frees the call's live-call slot at once instead of
leaving it held for the call's joinTimeout plus maxDuration, the most the call could last.

Freeing a slot is only safe once the call cannot go on, so the Ultravox call is ended first,
without erasing it: a live call is hung up (its messages, recording and summary stay at
Ultravox), a call that is over is left as it is, and only a call nobody joined yet is deleted,
since its joinUrl would otherwise still let the page start talking after its slot was freed.
Only the page that started the call can end it: the call's record keeps the SHA-256 of a secret
handed to that page alone, never the secret."""

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.ultravox import UltravoxClient, UltravoxError, UltravoxRequestError
from app.web.errors import WebCallEndRefused
from app.web.limits import Limits

logger = logging.getLogger("app.web")

# Ultravox call ids are UUIDs; anything far from that shape cannot be a call of ours.
CALL_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
END_SECRET_BYTES = 32

# How a web call ended at Ultravox: hung up live, found over already (the visitor or the agent
# hung up, or Ultravox has no such call), or deleted before anyone joined it.
Ending = Literal["hung_up", "was_over", "deleted_unjoined"]


class EndRequest(BaseModel):
    """The body of `POST /web/calls/{call_id}/end`."""

    model_config = ConfigDict(extra="forbid")

    endSecret: str = Field(min_length=1, max_length=128)


@dataclass(frozen=True)
class LiveCall:
    """What the service keeps of a web call while it may be live: its live-call slot, the hash
    of its end secret, and whether it was ended."""

    slot: str
    secret_sha256: str
    ended: bool = False

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> "LiveCall":
        return cls(**json.loads(text))


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record_key(call_id: str) -> str:
    return f"call:{call_id}"


async def remember_live_call(limits: Limits, call_id: str, slot: str, seconds: float) -> str:
    """Keep the record of a call just created, for as long as its slot is held; the secret
    that ends it, for the page."""
    secret = secrets.token_urlsafe(END_SECRET_BYTES)
    await limits.put(_record_key(call_id), LiveCall(slot, _sha256(secret)).dump(), seconds)
    return secret


async def end_live_call(
    limits: Limits, ultravox: UltravoxClient, live_calls_key: str, call_id: str, secret: str
) -> Ending | None:
    """End web call `call_id` and free its slot: how this request ended it, or None when it had
    been ended already. `WebCallEndRefused` for an unknown call, a wrong secret, or an Ultravox
    that could not end it (the slot then stays held: the call may still be live)."""
    text = await limits.get(_record_key(call_id)) if CALL_ID.match(call_id) else None
    if text is None:
        raise WebCallEndRefused(
            404, "not_found", "no live web call has this id: it has ended by itself"
        )
    live = LiveCall.load(text)
    if not hmac.compare_digest(live.secret_sha256, _sha256(secret)):
        raise WebCallEndRefused(403, "forbidden_secret", "the end secret is not this call's")
    if live.ended:
        return None
    try:
        ending = await _end_at_ultravox(ultravox, call_id)
    except UltravoxError as exc:
        logger.warning(
            "web.end_failed",
            extra={
                "fields": {
                    "ultravox_call_id": call_id,
                    "ultravox_error": type(exc).__name__,
                    "ultravox_status": exc.status_code,
                }
            },
        )
        raise WebCallEndRefused(
            502,
            "ultravox_failed",
            "the call could not be ended now: it ends by itself at its maxDuration",
            retry_after=5 if exc.retryable else None,
        ) from exc
    await limits.release_slot(live_calls_key, live.slot)
    await limits.replace(_record_key(call_id), replace(live, ended=True).dump())
    return ending


async def _end_at_ultravox(ultravox: UltravoxClient, call_id: str) -> Ending:
    """Make sure Ultravox call `call_id` cannot go on, erasing nothing a conversation left."""
    try:
        if await _hung_up(ultravox, call_id):
            return "hung_up"
        progress = await ultravox.call_progress(call_id)
        if progress.ended is not None:
            return "was_over"
        if progress.joined is None:
            # Nothing was said, so nothing is lost; a call merely left alone stays joinable
            # until its joinTimeout, by a page whose slot would already be free.
            await ultravox.delete_call(call_id)
            return "deleted_unjoined"
        # Joined but refused: it joined after the first hang-up, or the visitor just left and
        # Ultravox has not written `ended` yet. A second refusal can only mean the latter.
        return "hung_up" if await _hung_up(ultravox, call_id) else "was_over"
    except UltravoxError as exc:
        if exc.status_code == 404:  # Ultravox has no such call left, so it is over
            return "was_over"
        raise


async def _hung_up(ultravox: UltravoxClient, call_id: str) -> bool:
    """Hang up a live call: False when Ultravox refuses because the call is not live (422)."""
    try:
        await ultravox.hang_up(call_id)
    except UltravoxRequestError as exc:
        if exc.status_code == 422:
            return False
        raise
    return True
