"""The transfer flow, the same for every provider:

inbound call created -> remember Ultravox call id -> provider call (with the tool's session)
tool request -> check credential -> target open? -> claim the call -> driver starts cold/warm
provider callback -> verify signature -> driver reads the outcome -> connected, or back to the
agent: a new Ultravox call for the same route carrying the first conversation, connected with
the provider's stream answer again.

Every decision is taken once: a claim in the shared store per Ultravox call (one transfer at a
time) and per transfer (connected or returned, whichever comes first), so repeated or replayed
callbacks change nothing."""

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.calltypes import Answer, FallbackPlan, InboundCall, WebhookError, WebhookRequest
from app.providers.base import ProviderAdapter
from app.providers.transferring import CallbackUrls, Transfer, TransferDriver, TransferFailed
from app.routing import InlineTarget, Route, RoutingTable
from app.routing.transfer import TransferTarget
from app.settings import ConfigError, ServiceSettings
from app.store import Store, StoreError
from app.transfer.steps import transfer_step
from app.transfer.tool import (
    MAX_REASON_CHARS,
    MAX_SUMMARY_CHARS,
    TOOL_TIMEOUT_SECONDS,
    ToolRefused,
    mint_token,
    new_session,
    token_matches,
    tool_definition,
)
from app.ultravox import UltravoxCall, UltravoxClient, UltravoxError
from app.ultravox_request import build_call_body, create_call

logger = logging.getLogger("app.transfer")

TOOL_PATH = "/transfer/tool"
CALL_KEY = "transfer:call:{}"  # Ultravox call id -> the provider call it streams
CLAIM_KEY = "transfer:claim:{}"  # Ultravox call id -> the transfer it started
TRANSFER_KEY = "transfer:{}"  # transfer id -> Transfer
SETTLED_KEY = "transfer:settled:{}"  # transfer id -> connected or returned, and the answer
AGENT_KEY = "transfer:agent:{}"  # transfer id -> the stream answer a provider fetches once
# A transfer's records outlive any ringing and any conversation that follows it.
TRANSFER_TTL_SECONDS = 4 * 3600
DEFAULT_MAX_DURATION_SECONDS = 3600.0
# The tool answers within this, leaving Ultravox's timeout room for the network.
TOOL_BUDGET_SECONDS = TOOL_TIMEOUT_SECONDS - 4
ACCEPT_KEY = "1"
# The tool answer's `X-Ultravox-Response-Type` that ends the agent's call.
HANG_UP = "hang-up"


class UnknownTransfer(WebhookError):
    status_code = 404


class TransfersUnavailable(WebhookError):
    """The shared store that holds transfers cannot be reached: the provider may retry."""

    status_code = 503


class Inbound(Protocol):
    """What the flow uses of the inbound side (the Bridge): adapters, routes and Ultravox."""

    adapters: dict[str, ProviderAdapter]
    routing: RoutingTable
    ultravox: UltravoxClient


@dataclass(frozen=True)
class CallLink:
    """What the bridge remembers of an Ultravox call that may be transferred."""

    provider: str
    provider_call_id: str
    route: str
    caller: str
    called: str
    session: str
    details: dict[str, str]


@dataclass(frozen=True)
class Offer:
    """The transfer tool added to one Ultravox call's request, and what to record once the
    call exists."""

    tools: list[dict[str, Any]]
    link: CallLink
    ttl_seconds: float

    def placed_as(self, provider_call_id: str) -> "Offer":
        """This offer for an outbound call, once the provider has given the call its id."""
        return replace(self, link=replace(self.link, provider_call_id=provider_call_id))


@dataclass(frozen=True)
class ToolAnswer:
    """The tool endpoint's reply: HTTP status, the JSON the agent reads, its reaction."""

    status_code: int
    body: dict[str, str]
    reaction: str | None = None
    response_type: str | None = None  # X-Ultravox-Response-Type


class ToolRequest(BaseModel):
    """The JSON body Ultravox sends: the model's parameters, the static session, the call id."""

    model_config = ConfigDict(extra="ignore")

    callId: str = Field(min_length=1, max_length=64)
    session: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=MAX_REASON_CHARS * 2)
    summary: str = Field(default="", max_length=MAX_SUMMARY_CHARS * 2)


def _speaks(result: str, message: str, status_code: int = 200) -> ToolAnswer:
    return ToolAnswer(status_code, {"result": result, "message": message}, "speaks")


def _forbidden(why: str) -> ToolRefused:
    logger.warning("transfer.tool_forbidden", extra={"fields": {"status": 403, "reason": why}})
    return ToolRefused(403, "forbidden")


GOODBYE = FallbackPlan("Sorry, nobody can take your call right now. Goodbye.")


class TransferDesk:
    """Offers the transfer tool on calls of routes with `transfer:`, serves it, and carries
    transfers through the providers' callbacks."""

    def __init__(
        self,
        settings: ServiceSettings,
        inbound: Inbound,
        drivers: dict[str, TransferDriver],
        store: Store,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        secret = settings.transfer_token_secret
        self._secret = secret.get_secret_value().encode() if secret else b""
        self._base = settings.public_base_url or ""
        self._inbound = inbound
        self.drivers = drivers
        self._store = store
        self._now = now
        self._background: set[asyncio.Task[None]] = set()

    # --- when the inbound flow creates a call ----------------------------------------------

    def offer(self, route: Route, call: InboundCall, *, outbound: bool = False) -> Offer | None:
        """The transfer tool for a new call of `route`, or None when the route has none or its
        provider cannot transfer (an `outbound` call: cannot transfer the calls it places)."""
        plan = route.transfer
        if plan is None or not isinstance(route.target, InlineTarget):
            return None
        driver = self.drivers.get(call.provider)
        if (
            driver is None
            or not plan.modes() <= driver.modes
            or not self._secret
            or (outbound and not driver.transfers_outbound)
        ):
            logger.warning(
                "transfer.unavailable",
                extra={
                    "fields": {"provider": call.provider, "route": route.name, "outbound": outbound}
                },
            )
            return None
        session = new_session()
        tool = tool_definition(
            plan, self._base + TOOL_PATH, session, mint_token(self._secret, session)
        )
        link = CallLink(
            call.provider,
            call.call_id,
            route.name,
            call.from_number,
            call.to_number,
            session,
            driver.remember(call),
        )
        return Offer([tool], link, _max_duration(route.target) + 300)

    async def remember(self, offer: Offer, created: UltravoxCall) -> None:
        """Record which provider call the new Ultravox call streams, for as long as it lasts.
        Without the record the tool refuses, and the agent tells the caller so."""
        try:
            await self._store.put(
                CALL_KEY.format(created.call_id),
                json.dumps(asdict(offer.link)),
                offer.ttl_seconds,
            )
        except StoreError as exc:
            logger.warning(
                "transfer.not_recorded",
                extra={"fields": {"ultravox_call_id": created.call_id, "error": str(exc)}},
            )

    # --- the tool ----------------------------------------------------------------------------

    async def request(self, token: str, body: bytes) -> ToolAnswer:
        """Serve one tool call from Ultravox, within the tool's timeout."""
        try:
            async with asyncio.timeout(TOOL_BUDGET_SECONDS):
                return await self._request(token, body)
        except TimeoutError:
            return _speaks("failed", "The transfer system did not answer; keep helping.")

    async def _request(self, token: str, body: bytes) -> ToolAnswer:
        try:
            asked = ToolRequest.model_validate_json(body)
        except ValidationError:
            raise ToolRefused(400, "bad_request") from None
        # The credential first: a request without the right one costs one HMAC, no store access.
        if not self._secret or not token_matches(self._secret, asked.session, token):
            raise _forbidden("wrong credential")
        try:
            stored = await self._store.get(CALL_KEY.format(asked.callId))
        except StoreError:
            return _speaks("unavailable", "Transfers are unavailable right now; keep helping.")
        link = CallLink(**json.loads(stored)) if stored else None
        if link is None or not hmac.compare_digest(link.session, asked.session):
            raise _forbidden("another call's credential, or a call this service never made")
        route = self._inbound.routing.named(link.route)
        plan = route.transfer if route is not None else None
        target = plan.targets.get(asked.target) if plan is not None else None
        if plan is None:
            return _speaks("unavailable", "Transfers are no longer offered on this line.")
        if target is None:
            names = ", ".join(plan.targets)
            return _speaks("unknown_target", f"There is no target {asked.target}; use {names}.")
        transfer = _new_transfer(link, asked, target)
        transfer_step(transfer, "requested", reason=asked.reason[:MAX_REASON_CHARS])
        if target.hours is not None and not target.hours.is_open(self._now()):
            transfer_step(transfer, "closed")
            return _speaks(
                "closed",
                f"{target.description} is closed now (open {target.hours.text}). Tell the "
                "caller and keep helping; offer to take a message.",
            )
        return await self._start(transfer, link)

    async def _start(self, transfer: Transfer, link: CallLink) -> ToolAnswer:
        claim = CLAIM_KEY.format(transfer.ultravox_call_id)
        try:
            held = await self._store.claim(claim, transfer.id, TRANSFER_TTL_SECONDS)
            if held is None:
                await self._store.put(
                    TRANSFER_KEY.format(transfer.id), transfer.dumps(), TRANSFER_TTL_SECONDS
                )
        except StoreError as exc:
            transfer_step(transfer, "provider_error", error=str(exc))
            return _speaks("unavailable", "Transfers are unavailable right now; keep helping.")
        if held is not None:
            transfer_step(transfer, "duplicate", first_transfer_id=held)
            return ToolAnswer(200, {"result": "already_transferring"}, "listens")
        driver = self.drivers[link.provider]
        urls = self._urls(transfer)
        try:
            if transfer.mode == "warm":
                transfer.person_call_id = await driver.start_warm(transfer, urls)
                await self._store.put(
                    TRANSFER_KEY.format(transfer.id), transfer.dumps(), TRANSFER_TTL_SECONDS
                )
            else:
                await driver.start_cold(transfer, urls)
        except (TransferFailed, StoreError) as exc:
            transfer_step(transfer, "provider_error", error=str(exc)[:300], status=_status_of(exc))
            if transfer.mode == "warm":
                await self._abandon(transfer)
            await self._release(claim)
            return _speaks(
                "failed",
                "The transfer could not be started. Apologise, and keep helping the caller.",
            )
        transfer_step(transfer, "started", person_call_id=transfer.person_call_id)
        # Where moving the call leaves the agent's call running, the answer ends it.
        ending = HANG_UP if driver.ends_agent_call else None
        return ToolAnswer(200, {"result": "transferring"}, "listens", ending)

    async def _abandon(self, transfer: Transfer) -> None:
        """Settle a warm transfer that did not start, so that a person already rung (whose
        call a provider may not let us cancel) hears that nobody is waiting."""
        try:
            await self._settle(transfer, "failed")
        except StoreError as exc:
            logger.warning("transfer.not_settled", extra={"fields": {"error": str(exc)}})

    async def _release(self, claim: str) -> None:
        try:
            await self._store.take(claim)
        except StoreError as exc:  # the claim expires by itself; the agent may not retry
            logger.warning("transfer.claim_kept", extra={"fields": {"error": str(exc)}})

    # --- provider callbacks ------------------------------------------------------------------

    async def callback(
        self, provider: str, transfer_id: str, step: str, request: WebhookRequest
    ) -> Answer:
        """Answer a provider's callback for one transfer; `WebhookError` when refused."""
        try:
            return await self._callback(provider, transfer_id, step, request)
        except WebhookError as exc:
            logger.warning(
                "transfer.callback_refused",
                extra={"fields": {"provider": provider, "step": step, "status": exc.status_code}},
            )
            raise
        except StoreError as exc:
            logger.warning("transfer.store_unavailable", extra={"fields": {"error": str(exc)}})
            raise TransfersUnavailable("the shared store is unavailable") from None

    async def _callback(
        self, provider: str, transfer_id: str, step: str, request: WebhookRequest
    ) -> Answer:
        adapter = self._inbound.adapters.get(provider)
        driver = self.drivers.get(provider)
        if adapter is None or driver is None:
            raise UnknownTransfer(f"no transfers on {provider!r}")
        adapter.check(request)  # signed like that provider's webhooks
        stored = await self._store.get(TRANSFER_KEY.format(transfer_id))
        if stored is None:
            raise UnknownTransfer("unknown or finished transfer")
        transfer = Transfer.loads(stored)
        if transfer.provider != provider:
            raise UnknownTransfer("unknown or finished transfer")
        urls = self._urls(transfer)
        if step == "dial":
            return driver.dial_answer(transfer, urls)
        if step == "hold":
            return driver.hold_answer(transfer, urls)
        if step == "music":
            return driver.music_answer()
        if step == "whisper":
            if await self._store.get(SETTLED_KEY.format(transfer.id)) is not None:
                # The caller is back with an agent (or was never put on hold): nobody to join.
                return driver.hangup_answer("Sorry, the caller is no longer waiting. Goodbye.")
            return driver.whisper_answer(transfer, urls, _whisper_text(transfer))
        if step == "dialed":
            return await self._dialed(transfer, driver, adapter, request)
        if step == "accept":
            return await self._accept(transfer, driver, adapter, request)
        if step == "person":
            return await self._person_ended(transfer, driver, adapter, request)
        if step == "agent":
            return await self._agent(transfer, adapter)
        raise UnknownTransfer(f"unknown transfer step {step!r}")

    async def _dialed(
        self,
        transfer: Transfer,
        driver: TransferDriver,
        adapter: ProviderAdapter,
        request: WebhookRequest,
    ) -> Answer:
        outcome = driver.dial_outcome(request)
        if outcome is None:
            return driver.empty_answer()
        if outcome.answered:
            if await self._settle(transfer, "connected") is None:
                transfer_step(transfer, "connected", status=outcome.status)
            return driver.connected_answer()
        first = await self._settle(transfer, "returned")
        if first is not None:  # a repeat of this callback: the same answer as the first
            return first.get("answer") or adapter.fallback_answer(self._fallback(transfer))
        transfer_step(transfer, "unanswered", status=outcome.status)
        answer = await self._reconnect(transfer, adapter, outcome.status)
        await self._store.put(
            SETTLED_KEY.format(transfer.id),
            _settled_record("returned", answer),
            TRANSFER_TTL_SECONDS,
        )
        return answer

    async def _accept(
        self,
        transfer: Transfer,
        driver: TransferDriver,
        adapter: ProviderAdapter,
        request: WebhookRequest,
    ) -> Answer:
        if driver.pressed(request) == ACCEPT_KEY:
            if await self._settle(transfer, "connected") is None:
                transfer_step(transfer, "connected")
                return driver.join_answer(transfer)
            return driver.hangup_answer("Sorry, the caller is no longer waiting. Goodbye.")
        if await self._settle(transfer, "returned") is None:
            transfer_step(transfer, "declined")
            self._in_background(self._return_caller(transfer, driver, adapter, "declined"))
        return driver.hangup_answer("The caller goes back to the assistant. Goodbye.")

    async def _person_ended(
        self,
        transfer: Transfer,
        driver: TransferDriver,
        adapter: ProviderAdapter,
        request: WebhookRequest,
    ) -> Answer:
        status = driver.person_status(request)
        if status is None:  # ringing, answered: the person's call goes on
            return driver.empty_answer()
        if await self._settle(transfer, "returned") is None:
            transfer_step(transfer, "unanswered", status=status)
            self._in_background(self._return_caller(transfer, driver, adapter, status))
        return driver.empty_answer()

    async def _agent(self, transfer: Transfer, adapter: ProviderAdapter) -> Answer:
        stored = await self._store.take(AGENT_KEY.format(transfer.id))
        if stored is None:
            raise UnknownTransfer("no agent is waiting for this transfer")
        answer = json.loads(stored)
        return Answer(answer["body"].encode(), answer["media_type"])

    async def _settle(self, transfer: Transfer, outcome: str) -> dict[str, Any] | None:
        """Decide the transfer's outcome once. None when this caller decided it; otherwise
        what the first decision recorded (`answer`: the answer it gave, once known)."""
        held = await self._store.claim(
            SETTLED_KEY.format(transfer.id), _settled_record(outcome), TRANSFER_TTL_SECONDS
        )
        if held is None:
            return None
        first: dict[str, Any] = json.loads(held)
        if "body" in first:
            first["answer"] = Answer(first["body"].encode(), first["media_type"])
        return first

    def _fallback(self, transfer: Transfer) -> FallbackPlan:
        call = InboundCall(
            transfer.provider, transfer.provider_call_id, transfer.caller, transfer.called
        )
        return self._inbound.routing.fallback_for(call) or GOODBYE

    # --- back to the agent -------------------------------------------------------------------

    async def _return_caller(
        self, transfer: Transfer, driver: TransferDriver, adapter: ProviderAdapter, status: str
    ) -> None:
        """Move a caller waiting on hold to a new agent (warm transfer not taken)."""
        stream = await self._reconnect(transfer, adapter, status)
        try:
            await self._store.put(
                AGENT_KEY.format(transfer.id),
                json.dumps({"body": stream.body.decode(), "media_type": stream.media_type}),
                TRANSFER_TTL_SECONDS,
            )
            await driver.return_caller(transfer, stream, self._urls(transfer))
        except (TransferFailed, StoreError) as exc:
            transfer_step(transfer, "return_failed", error=str(exc)[:300])

    async def _reconnect(self, transfer: Transfer, adapter: ProviderAdapter, status: str) -> Answer:
        """A new Ultravox call for the transfer's route that knows the conversation so far, as
        the provider's stream answer; the route's fallback answer if none can be had."""
        call = InboundCall(
            transfer.provider, transfer.provider_call_id, transfer.caller, transfer.called
        )
        route = self._inbound.routing.named(transfer.route) or self._inbound.routing.resolve(call)
        if route is None or not isinstance(route.target, InlineTarget):
            transfer_step(transfer, "fallback", reason="the route is gone")
            return adapter.fallback_answer(self._fallback(transfer))
        try:
            history = await self._inbound.ultravox.call_messages(transfer.ultravox_call_id)
        except UltravoxError as exc:  # the new agent starts without the history, not silent
            logger.warning(
                "transfer.history_unavailable",
                extra={"fields": {"transfer_id": transfer.id, "error": str(exc)[:300]}},
            )
            history = []
        offer = self.offer(route, call)
        body = build_call_body(route.target, call, adapter.medium(), offer.tools if offer else ())
        messages = _initial_messages(history)
        if messages:
            body["initialMessages"] = messages
        body["systemPrompt"] = (body.get("systemPrompt") or "") + _failure_note(transfer, status)
        try:
            created = await create_call(self._inbound.ultravox, route.target, body)
            if offer is not None:
                await self.remember(offer, created)
            answer = await adapter.stream_answer(call, created)
        except UltravoxError as exc:
            transfer_step(transfer, "fallback", error=str(exc)[:300])
            return adapter.fallback_answer(route.fallback)
        transfer_step(
            transfer,
            "returned",
            status=status,
            new_ultravox_call_id=created.call_id,
            messages=len(messages),
        )
        return answer

    def _in_background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)  # referenced until done, as asyncio requires
        task.add_done_callback(self._background.discard)

    async def idle(self) -> None:
        """Wait for the callers being returned to an agent (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _urls(self, transfer: Transfer) -> CallbackUrls:
        return CallbackUrls(self._base, transfer.provider, transfer.id)


def check_transfer_settings(
    settings: ServiceSettings,
    routing: RoutingTable,
    adapters: dict[str, ProviderAdapter],
    driver_types: dict[str, type[TransferDriver]],
) -> list[str]:
    """The providers whose calls routes may transfer, after checking that everything they
    need is set; `ConfigError` naming each missing setting otherwise."""
    needed: dict[str, set[str]] = {}  # provider -> modes
    for _, provider, _, route in routing.entries():
        if route.transfer is None:
            continue
        names = [provider] if provider else [n for n, a in adapters.items() if a.ready]
        for name in names:
            needed.setdefault(name, set()).update(route.transfer.modes())
    if not needed:
        return []
    problems: list[str] = []
    if settings.transfer_token_secret is None:
        problems.append(
            "TRANSFER_TOKEN_SECRET: is required when a route has transfer: (32+ characters, "
            "the same on every replica)"
        )
    if settings.public_base_url is None:
        problems.append(
            "PUBLIC_BASE_URL: is required when a route has transfer: Ultravox and the providers "
            "call this service back at it"
        )
    for name, modes in sorted(needed.items()):
        driver = driver_types.get(name)
        if driver is None:
            problems.append(f"ROUTES_FILE: transfer is not available for {name} calls")
            continue
        problems.extend(
            f"{missing}: is required for transfers of {name} calls"
            for missing in driver.missing_settings(settings)
        )
        for mode in sorted(modes - driver.modes):
            problems.append(f"ROUTES_FILE: {name} calls cannot be transferred in {mode} mode")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return sorted(needed)


def _new_transfer(link: CallLink, asked: ToolRequest, target: TransferTarget) -> Transfer:
    return Transfer(
        id=secrets.token_urlsafe(12),
        provider=link.provider,
        provider_call_id=link.provider_call_id,
        ultravox_call_id=asked.callId,
        route=link.route,
        caller=link.caller,
        called=link.called,
        target=target.name,
        destination=target.destination,
        mode=target.mode,
        ring_timeout_seconds=target.ring_timeout_seconds,
        caller_id=target.caller_id,
        whisper=target.whisper,
        reason=asked.reason[:MAX_REASON_CHARS],
        summary=asked.summary[:MAX_SUMMARY_CHARS],
        details=dict(link.details),
    )


def _whisper_text(transfer: Transfer) -> str:
    ask = "Press 1 to take the call, or any other key to decline."
    if not transfer.whisper:
        return f"A caller is being transferred to you. {ask}"
    parts = ["The assistant is transferring a caller to you."]
    if transfer.reason:
        parts.append(f"Reason: {transfer.reason}.")
    if transfer.summary:
        parts.append(transfer.summary)
    return " ".join([*parts, ask])


def _failure_note(transfer: Transfer, status: str) -> str:
    why = {"declined": "they declined the call", "busy": "the line was busy"}.get(
        status, "nobody answered" if status in ("no-answer", "timeout", "") else "it failed"
    )
    return (
        f"\n\nEarlier in this call you tried to transfer the caller to {transfer.target}, but "
        f"the transfer did not go through ({why}). The conversation so far is above. Tell the "
        "caller, and offer to keep helping or to take a message."
    )


def _initial_messages(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The first call's spoken turns as `initialMessages`; tool calls are left out (their
    invocation ids belong to the first call)."""
    return [
        {"role": message["role"], "text": message["text"]}
        for message in history
        if message.get("role") in ("MESSAGE_ROLE_USER", "MESSAGE_ROLE_AGENT")
        and isinstance(message.get("text"), str)
        and message["text"].strip()
    ]


def _max_duration(target: InlineTarget) -> float:
    value = target.call_fields.get("maxDuration")
    if isinstance(value, str) and value.endswith("s"):
        return float(value.removesuffix("s"))
    return DEFAULT_MAX_DURATION_SECONDS


def _status_of(exc: Exception) -> int | None:
    return exc.status_code if isinstance(exc, TransferFailed) else None


def _settled_record(outcome: str, answer: Answer | None = None) -> str:
    record = {"outcome": outcome}
    if answer is not None:
        record.update(body=answer.body.decode(), media_type=answer.media_type)
    return json.dumps(record)
