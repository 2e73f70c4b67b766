"""Outbound calls: the agent phones someone. The flow, the same for every provider:
request -> route for our number -> Ultravox call (the user speaks first, joinTimeout covers
ringing) -> the provider's dialer places the call, streaming to the joinUrl once answered.

When the provider refuses, the waiting Ultravox call is deleted at once rather than left until
its joinTimeout."""

import contextlib
import logging
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.calltypes import InboundCall
from app.inbound import Bridge
from app.outbound.body import outbound_call_body
from app.outbound.errors import (
    DialerNotConfigured,
    InvalidOutboundRequest,
    OutboundError,
    OverCallLimit,
    PendingCallNotKept,
    ProviderNoAnswer,
    ProviderRefused,
    UltravoxBusy,
    UltravoxCallFailed,
)
from app.outbound.pending import PendingAnswer, pending_key
from app.outbound.progress import Progress, recorded_outcome
from app.outbound.request import OutboundCallRequest, PlacedCall
from app.outbound.target import outbound_route, outbound_target
from app.providers import DIALERS
from app.providers.dialing import (
    Dialer,
    DialNotSent,
    DialRefused,
    DialUncertain,
    OutboundCall,
)
from app.records.changes import ANSWERED, new_record_id
from app.records.lifecycle import lifetime_seconds
from app.routing import AgentTarget, InlineTarget
from app.settings import ServiceSettings
from app.store import Store, StoreError
from app.transfer.flow import Offer
from app.ultravox import UltravoxCall, UltravoxError, UltravoxHTTPError
from app.ultravox_request import create_call

logger = logging.getLogger("app.outbound")

# Threads for blocking SDK requests; more concurrent dials than this wait for a free thread.
DIAL_THREADS = 8


class OutboundCalls:
    """Places outbound calls. Holds one dialer per configured provider and the threads that run
    blocking SDK requests, apart from the event loop's default pool (which also resolves DNS for
    inbound webhooks' Ultravox requests)."""

    def __init__(self, settings: ServiceSettings, dialer_classes: tuple[type[Dialer], ...]) -> None:
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
    def from_settings(cls, settings: ServiceSettings) -> "OutboundCalls | None":
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
            outcome = recorded_outcome(exc)
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
        offer = self._transfer_offer(bridge, call, request, target)
        tools = offer.tools if offer is not None else ()
        body = outbound_call_body(target, call, medium, self._settings, request.metadata, tools)
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
                offer,
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
        offer: Offer | None,
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
        if offer is not None and bridge.transfers is not None:
            # The tool's calls name the Ultravox call; now the provider's call has its id too.
            await bridge.transfers.remember(offer.placed_as(dialed.call_id), created)
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

    @staticmethod
    def _transfer_offer(
        bridge: Bridge,
        call: InboundCall,
        request: OutboundCallRequest,
        target: AgentTarget | InlineTarget,
    ) -> Offer | None:
        """The transfer tool, when the call is the route's own inline call and its route
        configures `transfer:`."""
        if bridge.transfers is None or not isinstance(target, InlineTarget):
            return None
        route = outbound_route(bridge.routing, call, request)
        if route is None or route.target is not target:
            return None
        return bridge.transfers.offer(route, call, outbound=True)

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
