"""Outbound calls: the agent phones someone. The flow, the same for every provider:
request -> route for our number -> Ultravox call (the user speaks first, joinTimeout covers
ringing) -> the provider's dialer places the call, streaming to the joinUrl once answered.

When the provider refuses, the waiting Ultravox call is deleted at once rather than left until
its joinTimeout."""

import contextlib
import dataclasses
import json
import logging
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.bridge import Bridge
from app.calls import build_call_body, create_call
from app.phone import to_e164
from app.providers import DIALERS
from app.providers.base import InboundCall
from app.providers.dialing import (
    Dialer,
    DialNotSent,
    DialRefused,
    DialUncertain,
    OutboundCall,
)
from app.records.changes import ANSWERED, FAILED, REFUSED_OVER_LIMIT, REJECTED, new_record_id
from app.records.lifecycle import Decision, lifetime_seconds
from app.routing import AgentTarget, InlineTarget, RejectTarget, Route, RoutingTable
from app.settings import AGENT_FORBIDDEN_FIELDS, E164, Settings
from app.store import Store, StoreError
from app.ultravox import UltravoxCall, UltravoxError, UltravoxHTTPError

logger = logging.getLogger("app.outbound")

# Threads for blocking SDK requests; more concurrent dials than this wait for a free thread.
DIAL_THREADS = 8
PENDING_KEY_PREFIX = "outbound:pending:"


class OutboundError(Exception):
    """A call that could not be placed; `status_code` is the HTTP answer, `details` extra
    fields for the caller of the API."""

    status_code = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class InvalidOutboundRequest(OutboundError):
    """The request names something that does not exist or cannot be combined."""

    status_code = 422


class RouteRefusesCalls(OutboundError):
    """The route chosen for the caller number is set to reject calls."""

    status_code = 403


class DialerNotConfigured(OutboundError):
    """The provider's outbound settings are missing; the message names them."""

    status_code = 503


class OverCallLimit(OutboundError):
    """MAX_CONCURRENT_CALLS or the route's max_concurrent_calls is reached: nothing was created
    or dialled. Trying again once calls have ended can work."""

    status_code = 503


class UltravoxCallFailed(OutboundError):
    """Ultravox did not create the call; nothing was dialled."""

    status_code = 502


class UltravoxBusy(UltravoxCallFailed):
    """Ultravox is rate-limiting or short of capacity: trying again later can work."""

    status_code = 503


class PendingCallNotKept(OutboundError):
    """The shared store could not keep the call's answer for a provider that fetches it later;
    nothing was dialled and the Ultravox call was ended. Trying again can work."""

    status_code = 503


class ProviderRefused(OutboundError):
    """The provider refused the call; the Ultravox call was ended."""

    status_code = 502


class ProviderNoAnswer(OutboundError):
    """The provider's answer never arrived: it may be dialling. The Ultravox call is kept and
    ends by itself at its joinTimeout if nobody joins."""

    status_code = 504


class OutboundCallRequest(BaseModel):
    """The body of `POST /calls`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1)
    to: str
    from_: str | None = Field(default=None, alias="from")
    route: str | None = Field(default=None, min_length=1)
    agent_id: str | None = Field(default=None, alias="agentId", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    template_context: dict[str, Any] = Field(default_factory=dict, alias="templateContext")
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("to", "from_")
    @classmethod
    def _phone_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        number = to_e164(value)
        if not E164.match(number):
            raise ValueError("must be a phone number in E.164 form, such as +15005550006")
        return number

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(key for key in value if key.startswith("ultravox."))
        if reserved:
            raise ValueError(f"keys starting with 'ultravox.' are Ultravox's: {reserved}")
        return value

    @model_validator(mode="after")
    def _one_override(self) -> "OutboundCallRequest":
        if self.route and self.agent_id:
            raise ValueError("give route or agentId, not both")
        return self


@dataclass(frozen=True)
class PlacedCall:
    """A call the provider is dialling, with its Ultravox call waiting for the answer."""

    provider: str
    to_number: str
    from_number: str
    ultravox_call_id: str
    provider_call_id: str
    state: str = "dialing"


@dataclass
class Progress:
    """How far placing one call got, for its record whatever the outcome."""

    record_id: str
    received_at: float
    from_number: str | None = None
    route: str | None = None
    lifetime_seconds: float | None = None

    def decision(
        self,
        request: OutboundCallRequest,
        outcome: str,
        reason: str | None = None,
        ultravox_call_id: str | None = None,
        provider_call_id: str = "",
    ) -> Decision:
        call = InboundCall(request.provider, provider_call_id, self.from_number or "", request.to)
        return Decision(
            call,
            outcome,
            self.received_at,
            direction="outbound",
            route=self.route,
            ultravox_call_id=ultravox_call_id,
            lifetime_seconds=self.lifetime_seconds if outcome == ANSWERED else None,
            reason=reason,
            record_id=self.record_id,
        )


def _recorded_outcome(exc: OutboundError) -> str | None:
    """The record's outcome for a call that was not placed; None: a bad request, no call."""
    if isinstance(exc, InvalidOutboundRequest | DialerNotConfigured):
        return None
    if isinstance(exc, OverCallLimit):
        return REFUSED_OVER_LIMIT
    if isinstance(exc, RouteRefusesCalls):
        return REJECTED
    # The provider's answer was lost: it may be dialling; Ultravox's events will tell.
    return ANSWERED if isinstance(exc, ProviderNoAnswer) else FAILED


@dataclass(frozen=True)
class PendingAnswer:
    """What an answer-URL request needs to stream an answered call: kept in the store between
    dialling and answering, so any replica can answer."""

    ultravox_call_id: str
    join_url: str

    def dumps(self) -> str:
        return json.dumps({"ultravoxCallId": self.ultravox_call_id, "joinUrl": self.join_url})

    @classmethod
    def loads(cls, value: str) -> "PendingAnswer":
        data = json.loads(value)
        return cls(ultravox_call_id=data["ultravoxCallId"], join_url=data["joinUrl"])


def pending_key(provider: str, reference: str) -> str:
    return f"{PENDING_KEY_PREFIX}{provider}:{reference}"


def outbound_route(
    routing: RoutingTable, call: InboundCall, request: OutboundCallRequest
) -> Route | None:
    """The route for our number (`call.to_number`), or the route the request names."""
    return routing.resolve(call) if request.route is None else named_route(routing, request.route)


def outbound_target(
    routing: RoutingTable, call: InboundCall, request: OutboundCallRequest
) -> AgentTarget | InlineTarget:
    """The Ultravox call definition: the route for our number (`call.to_number`) or the route
    the request names, or the agent it names with that route's call fields; the request's
    templateContext fills the agent's prompt."""
    route = outbound_route(routing, call, request)
    target: AgentTarget | InlineTarget | RejectTarget
    if request.agent_id:
        fields = (
            {}
            if route is None or isinstance(route.target, RejectTarget)
            else route.target.call_fields
        )
        allowed = {k: v for k, v in fields.items() if k not in AGENT_FORBIDDEN_FIELDS}
        target = AgentTarget(agent_id=request.agent_id, call_fields=allowed)
    elif route is None:
        raise InvalidOutboundRequest(f"no route for the caller number {call.to_number}")
    else:
        target = route.target
    if isinstance(target, RejectTarget):
        raise RouteRefusesCalls(f"the route for {call.to_number} is set to reject calls")
    if request.template_context:
        if not isinstance(target, AgentTarget):
            raise InvalidOutboundRequest("templateContext needs an agent: give agentId")
        context = {**target.template_context, **request.template_context}
        target = dataclasses.replace(target, template_context=context)
    return target


def named_route(routing: RoutingTable, name: str) -> Route:
    """The route called `name` in the routing table in force."""
    route = routing.named(name)
    if route is None:
        raise InvalidOutboundRequest(f"no route named {name!r}")
    return route


def outbound_call_body(
    target: AgentTarget | InlineTarget,
    call: InboundCall,
    medium: dict[str, Any],
    settings: Settings,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """The Ultravox request for an outbound call: the inbound body, with the callee speaking
    first ("Hello?") and a joinTimeout long enough for the phone to ring."""
    body = build_call_body(target, call, medium)
    body["firstSpeakerSettings"] = {"user": {}}
    body["joinTimeout"] = settings.outbound_join_timeout
    bridge_metadata = {k: v for k, v in body["metadata"].items() if k != "providerCallId"}
    body["metadata"] = {**metadata, **bridge_metadata, "direction": "outbound"}
    return body


class OutboundCalls:
    """Places outbound calls. Holds one dialer per configured provider and the threads that run
    blocking SDK requests, apart from the event loop's default pool (which also resolves DNS for
    inbound webhooks' Ultravox requests)."""

    def __init__(self, settings: Settings, dialer_classes: tuple[type[Dialer], ...]) -> None:
        self._settings = settings
        self._executor = ThreadPoolExecutor(DIAL_THREADS, thread_name_prefix="dial")
        self._classes = {cls.name: cls for cls in dialer_classes}
        self.missing: dict[str, list[str]] = {}
        self.dialers: dict[str, Dialer] = {}
        for name, cls in self._classes.items():
            missing = cls.missing_settings(settings)
            if missing:
                self.missing[name] = missing
            else:
                self.dialers[name] = cls(settings, self._executor)
        logger.info(
            "outbound.ready",
            extra={
                "fields": {
                    "providers": ",".join(sorted(self.dialers)) or "none",
                    **{f"{name}_missing": ",".join(v) for name, v in self.missing.items()},
                }
            },
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> "OutboundCalls | None":
        """The outbound service, or None when no API token enables it (no SDK is loaded)."""
        return cls(settings, DIALERS) if settings.bridge_api_tokens else None

    async def aclose(self) -> None:
        for dialer in self.dialers.values():
            await dialer.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dialer(self, provider: str) -> Dialer:
        if provider not in self._classes:
            known = ", ".join(sorted(self._classes))
            raise InvalidOutboundRequest(f"unknown provider {provider!r}; one of: {known}")
        if provider in self.missing:
            raise DialerNotConfigured(
                f"{provider} outbound calls need {', '.join(self.missing[provider])}: set "
                "the missing settings and restart the service"
            )
        return self.dialers[provider]

    async def place(self, request: OutboundCallRequest, bridge: Bridge, store: Store) -> PlacedCall:
        """Place the call, and record what happened to it."""
        progress = Progress(new_record_id(), time.time())
        try:
            placed = await self._place(request, bridge, store, progress)
        except OutboundError as exc:
            outcome = _recorded_outcome(exc)
            if outcome is not None:
                uv_call_id = exc.details.get("ultravoxCallId")
                bridge.lifecycle.decided(progress.decision(request, outcome, str(exc), uv_call_id))
            raise
        bridge.lifecycle.decided(
            progress.decision(
                request, ANSWERED, None, placed.ultravox_call_id, placed.provider_call_id
            )
        )
        return placed

    async def _place(
        self, request: OutboundCallRequest, bridge: Bridge, store: Store, progress: Progress
    ) -> PlacedCall:
        started = time.perf_counter()
        dialer = self._dialer(request.provider)
        from_number = request.from_ or dialer.default_from(self._settings)
        if from_number is None:
            setting = f"{request.provider.upper()}_FROM_NUMBER"
            raise InvalidOutboundRequest(f"give 'from', or set {setting} as the default")
        # Routes are keyed by the number called; for an outbound call that is our own number.
        call = InboundCall(request.provider, f"outbound-{uuid.uuid4()}", request.to, from_number)
        target = outbound_target(bridge.routing, call, request)
        route = outbound_route(bridge.routing, call, request)
        progress.from_number = from_number
        progress.route = route.name if route is not None else None
        medium = bridge.adapter(request.provider).medium()
        body = outbound_call_body(target, call, medium, self._settings, request.metadata)
        progress.lifetime_seconds = lifetime_seconds(body)
        slot_route = progress.route or "outbound"
        limit = route.max_concurrent_calls if route is not None else None
        if not await bridge.lifecycle.admit(
            progress.record_id, slot_route, limit, progress.lifetime_seconds
        ):
            raise OverCallLimit(
                "too many live calls (MAX_CONCURRENT_CALLS or the route's "
                "max_concurrent_calls): try again when calls have ended"
            )
        try:
            return await self._dial_new_call(
                request,
                bridge,
                store,
                dialer,
                target,
                body,
                from_number,
                started,
                progress.record_id,
            )
        except OutboundError as exc:
            if not isinstance(exc, ProviderNoAnswer):  # nothing is ringing: the slot is free
                await bridge.lifecycle.release(progress.record_id, slot_route)
            raise

    async def _dial_new_call(
        self,
        request: OutboundCallRequest,
        bridge: Bridge,
        store: Store,
        dialer: Dialer,
        target: AgentTarget | InlineTarget,
        body: dict[str, Any],
        from_number: str,
        started: float,
        record_id: str,
    ) -> PlacedCall:
        fields: dict[str, Any] = {
            "provider": request.provider,
            "to": request.to,
            "from": from_number,
            "call_record_id": record_id,
        }
        created = await self._create(bridge, target, body, fields)
        fields["ultravox_call_id"] = created.call_id
        try:
            answer_url, key = await self._pending_answer(dialer, created, store)
        except StoreError as exc:
            ended = await self._end(bridge, created.call_id)
            fields.update(reason=str(exc), ended=ended)
            logger.warning("outbound.store_unavailable", extra={"fields": fields})
            raise PendingCallNotKept(
                f"the shared store cannot keep the call for {request.provider}: {exc}",
                ultravoxCallId=created.call_id,
                ultravoxCallEnded=ended,
            ) from exc
        outbound = OutboundCall(
            to_number=request.to,
            from_number=from_number,
            join_url=created.join_url,
            ring_timeout_seconds=self._settings.outbound_ring_timeout_seconds,
            answer_url=answer_url,
            status_url=self._status_url(dialer),
        )
        try:
            dialed = await dialer.dial(outbound)
        except DialRefused as exc:
            if key is not None:
                with contextlib.suppress(StoreError):  # it expires with the joinTimeout anyway
                    await store.take(key)
            ended = await self._end(bridge, created.call_id)
            fields.update(reason=exc.message, provider_status=exc.status_code, ended=ended)
            logger.warning("outbound.refused", extra={"fields": fields})
            outcome = "could not be reached" if isinstance(exc, DialNotSent) else "refused the call"
            raise ProviderRefused(
                f"{request.provider} {outcome}: {exc.message}",
                ultravoxCallId=created.call_id,
                ultravoxCallEnded=ended,
                providerStatus=exc.status_code,
            ) from exc
        except DialUncertain as exc:
            fields["reason"] = exc.message
            logger.warning("outbound.no_answer", extra={"fields": fields})
            raise ProviderNoAnswer(
                f"{request.provider} did not answer: {exc.message}; it may still be dialling, "
                f"and Ultravox call {created.call_id} ends after "
                f"{self._settings.outbound_join_timeout} if nobody joins",
                ultravoxCallId=created.call_id,
            ) from exc
        fields.update(
            provider_call_id=dialed.call_id,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        logger.info("outbound.dialing", extra={"fields": fields})
        return PlacedCall(
            provider=request.provider,
            to_number=request.to,
            from_number=from_number,
            ultravox_call_id=created.call_id,
            provider_call_id=dialed.call_id,
        )

    async def _create(
        self,
        bridge: Bridge,
        target: AgentTarget | InlineTarget,
        body: dict[str, Any],
        fields: dict[str, Any],
    ) -> UltravoxCall:
        try:
            return await create_call(bridge.ultravox, target, body)
        except UltravoxError as exc:
            fields.update(ultravox_error=type(exc).__name__, ultravox_status=exc.status_code)
            logger.warning("outbound.ultravox_failed", extra={"fields": fields})
            details: dict[str, Any] = {"ultravoxStatus": exc.status_code}
            if isinstance(exc, UltravoxHTTPError) and exc.retry_after is not None:
                details["retryAfter"] = exc.retry_after
            error = UltravoxBusy if exc.retryable else UltravoxCallFailed
            raise error(f"Ultravox did not create the call: {exc}", **details) from exc

    def _status_url(self, dialer: Dialer) -> str | None:
        """Where the provider reports the call's progress (`/{provider}/status`); it needs the
        public URL, without which the call's end is known from Ultravox's events only."""
        base = self._settings.public_base_url
        return f"{base}/{dialer.name}/status" if base else None

    async def _pending_answer(
        self, dialer: Dialer, created: UltravoxCall, store: Store
    ) -> tuple[str | None, str | None]:
        """For a provider that fetches its instructions once the callee answers: keep the
        joinUrl under an unguessable single-use reference, and the answer URL that names it."""
        if not dialer.needs_answer_url:
            return None, None
        reference = secrets.token_urlsafe(24)
        key = pending_key(dialer.name, reference)
        pending = PendingAnswer(created.call_id, created.join_url)
        # Past the joinTimeout Ultravox has ended the call: nothing left to answer with.
        await store.put(key, pending.dumps(), self._settings.outbound_join_timeout_seconds)
        base = self._settings.public_base_url or ""
        return f"{base}/{dialer.name}/outbound/{reference}", key

    async def _end(self, bridge: Bridge, call_id: str) -> bool:
        try:
            await bridge.ultravox.delete_call(call_id)
        except UltravoxError as exc:
            logger.warning(
                "outbound.ultravox_end_failed",
                extra={"fields": {"ultravox_call_id": call_id, "error": str(exc)[:300]}},
            )
            return False
        return True
