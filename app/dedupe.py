"""One Ultravox call per provider call, however often the provider repeats its webhook.

Before creating the Ultravox call, the webhook claims the provider's call id in the store with
a short lease. Once created, two records replace the claim: the call's `joinUrl`, kept for
`DEDUPE_JOIN_WINDOW_SECONDS`, and a compact "created" marker, kept for `DEDUPE_TTL_SECONDS`
(days), longer than anyone would hold on to a captured webhook. A repeat within the join window
answers with the same `joinUrl`; a later one (a replay: Twilio's and Plivo's signatures carry no
time) never gets it, and creates no call either. A repeat that arrives while the first creation
is in flight waits for it: in this process on the first webhook's future, from another replica
by polling the record. If the owner dies, its lease runs out and the next webhook claims the
call. When the store fails, calls are still created (only repeats within this process are then
recognised): a call never fails because of the cache.
"""

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.store import Store, StoreError
from app.ultravox import UltravoxCall, UltravoxError

logger = logging.getLogger(__name__)

# How often a webhook waiting on another replica's creation re-reads the shared record: short
# next to Ultravox's answer time, cheap for Redis.
POLL_SECONDS = 0.05

_CREATING = json.dumps({"state": "creating"})
_FAILED = json.dumps({"state": "failed"})


class FirstCreationFailed(UltravoxError):
    """A repeated webhook whose first copy could not create the Ultravox call: it shares that
    webhook's fallback instead of trying again."""


class FirstCreationPending(UltravoxError):
    """A repeated webhook waited as long as the deadline allows for the first copy's call; it
    falls back rather than risk a second call."""


class RepeatAfterJoinWindow(Exception):
    """A repeat of a call created longer ago than the join window: whoever sends it (a replayed
    capture, most likely) gets neither the live call's `joinUrl` nor a new call."""


@dataclass(frozen=True)
class Created:
    """The Ultravox call for a provider call; `duplicate` when another webhook created it."""

    call: UltravoxCall
    duplicate: bool


def _created_record(call: UltravoxCall) -> str:
    return json.dumps({"state": "created", "callId": call.call_id})


def _join_key(key: str) -> str:
    return "join:" + key.removeprefix("call:")


def _read_record(value: str) -> dict[str, object]:
    """The record's fields; an unreadable record reads as one still being created, so repeats
    wait for it to expire rather than fail."""
    try:
        record = json.loads(value)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


class CallDeduplicator:
    """Creates at most one Ultravox call per (provider, provider call id) while its record
    lives (`ttl_seconds`), and hands its `joinUrl` to repeats for `join_window_seconds` only.
    `wait_seconds` bounds how long a repeat waits for the first creation."""

    def __init__(
        self,
        store: Store,
        *,
        ttl_seconds: float,
        join_window_seconds: float,
        lease_seconds: float,
        wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_seconds = ttl_seconds
        self._join_window_seconds = join_window_seconds
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._clock = clock
        self._in_flight: dict[str, asyncio.Future[UltravoxCall | None]] = {}

    async def create_once(
        self, provider: str, call_id: str, create: Callable[[], Awaitable[UltravoxCall]]
    ) -> Created:
        """The Ultravox call for this provider call: created by `create` if this is the first
        webhook for it, otherwise the one the first webhook created (waiting for it if needed).
        Raises `UltravoxError` when no call can be had; the caller then falls back, and
        `RepeatAfterJoinWindow` for a repeat of a call created before the join window."""
        key = f"call:{provider}:{call_id}"
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            return Created(await self._wait_in_process(in_flight), duplicate=True)
        future: asyncio.Future[UltravoxCall | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        outcome: UltravoxCall | None = None
        try:
            created = await self._create_shared(key, create)
            outcome = created.call
            return created
        finally:
            del self._in_flight[key]
            future.set_result(outcome)

    async def _wait_in_process(self, first: "asyncio.Future[UltravoxCall | None]") -> UltravoxCall:
        try:
            async with asyncio.timeout(self._wait_seconds):
                # Shielded: a waiter giving up must not cancel the first webhook's result.
                call = await asyncio.shield(first)
        except TimeoutError:
            raise FirstCreationPending("the first webhook for this call is still waiting") from None
        if call is None:
            raise FirstCreationFailed("the first webhook for this call got no Ultravox call")
        return call

    async def _create_shared(
        self, key: str, create: Callable[[], Awaitable[UltravoxCall]]
    ) -> Created:
        give_up_at = self._clock() + self._wait_seconds
        while True:
            try:
                held = await self._store.claim(key, _CREATING, self._lease_seconds)
            except StoreError as exc:
                _log_store_error(key, exc, "call created without de-duplication")
                return Created(await create(), duplicate=False)
            if held is None:
                return Created(await self._create_and_record(key, create), duplicate=False)
            record = _read_record(held)
            created_id = record.get("callId") if record.get("state") == "created" else None
            if isinstance(created_id, str):
                return Created(await self._repeat_of(key, created_id), duplicate=True)
            if record.get("state") == "failed":
                raise FirstCreationFailed("the first webhook for this call got no Ultravox call")
            if self._clock() >= give_up_at:
                raise FirstCreationPending("another replica is still creating this call")
            await asyncio.sleep(POLL_SECONDS)

    async def _repeat_of(self, key: str, ultravox_call_id: str) -> UltravoxCall:
        join_url = await self._store.get(_join_key(key))
        if join_url is None:
            raise RepeatAfterJoinWindow(
                f"a repeat of a call created over {self._join_window_seconds:g}s ago "
                f"(Ultravox call {ultravox_call_id})"
            )
        return UltravoxCall(call_id=ultravox_call_id, join_url=join_url, raw={})

    async def _create_and_record(
        self, key: str, create: Callable[[], Awaitable[UltravoxCall]]
    ) -> UltravoxCall:
        try:
            call = await create()
        except Exception:
            # Kept for the lease only: long enough for the repeats now waiting to see it.
            await self._record(key, _FAILED, self._lease_seconds)
            raise
        # The joinUrl first: a repeat that sees the marker must find it (within the window).
        await self._record(_join_key(key), call.join_url, self._join_window_seconds)
        await self._record(key, _created_record(call), self._ttl_seconds)
        return call

    async def _record(self, key: str, value: str, ttl_seconds: float) -> None:
        try:
            await self._store.put(key, value, ttl_seconds)
        except StoreError as exc:
            _log_store_error(key, exc, "repeats on other replicas will not find this call")


def _log_store_error(key: str, exc: StoreError, effect: str) -> None:
    logger.warning(
        "dedupe.store_unavailable",
        extra={"fields": {"key": key, "error": str(exc), "effect": effect}},
    )
