"""The inbound call flow, the same for every provider:
webhook -> adapter (verify, parse) -> route -> Ultravox call -> adapter (answer)."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.calltypes import (
    Answer,
    FallbackPlan,
    InboundCall,
    SignatureError,
    WebhookError,
    WebhookRequest,
)
from app.dedupe import CallDeduplicator, Created, RepeatAfterJoinWindow
from app.providers.base import ProviderAdapter
from app.records.changes import LATE_REPEAT, REFUSED_OVER_LIMIT
from app.records.lifecycle import CallLifecycle, Decision, lifetime_seconds
from app.routing import AgentTarget, InlineTarget, RejectTarget, Route, RoutingTable
from app.settings import ServiceSettings
from app.transfer.flow import TransferDesk
from app.ultravox import UltravoxCall, UltravoxClient, UltravoxError
from app.ultravox_request import build_call_body, create_call

logger = logging.getLogger("app.bridge")


class UnknownProvider(WebhookError):
    status_code = 404


class _OverLimit(Exception):
    """No live-call slot for a call this webhook would create."""


@dataclass
class Outcome:
    """What happened to one webhook, for the answer, the log line and the metrics."""

    answer: Answer
    outcome: str
    route: str | None = None
    ultravox_call_id: str | None = None
    call: InboundCall | None = None
    lifetime_seconds: float | None = None


@dataclass(frozen=True)
class Answered:
    """A webhook's answer, and `report`: its log line, metrics and call record, made once the
    answer is on its way so that the provider does not wait for them. Call it exactly once."""

    answer: Answer
    report: Callable[[], None]


OutcomeFor = Callable[[ProviderAdapter, WebhookRequest, dict[str, Any]], Awaitable[Outcome]]


class Bridge:
    """Answers providers' webhooks. Holds the adapters, the routing table and the Ultravox client
    for the application's lifetime; `routing` may be replaced while calls are in flight."""

    def __init__(
        self,
        settings: ServiceSettings,
        adapters: dict[str, ProviderAdapter],
        routing: RoutingTable,
        ultravox: UltravoxClient,
        dedupe: CallDeduplicator,
        lifecycle: CallLifecycle,
    ) -> None:
        self.adapters = adapters
        self.routing = routing
        self.ultravox = ultravox
        self.dedupe = dedupe
        self.transfers: TransferDesk | None = None  # set when a route offers transfers
        self.lifecycle = lifecycle
        self._endings: set[asyncio.Task[None]] = set()
        self._default_fallback = FallbackPlan(
            settings.fallback_message, settings.fallback_dial_number
        )

    def adapter(self, provider: str) -> ProviderAdapter:
        try:
            return self.adapters[provider]
        except KeyError:
            raise UnknownProvider(f"unknown provider {provider!r}") from None

    async def incoming(self, provider: str, request: WebhookRequest) -> Answered:
        """Answer a provider's call webhook: stream to a new Ultravox call, or fall back."""
        return await self._handle(provider, request, self._answer_call)

    async def fallback(self, provider: str, request: WebhookRequest) -> Answered:
        """Answer a provider's fallback-URL request without calling Ultravox."""
        return await self._handle(provider, request, self._answer_fallback)

    def refused(self, provider: str, method: str, exc: WebhookError, started: float) -> None:
        """Count and log a webhook refused before it reached the bridge (its body too large)."""
        if provider in self.adapters:  # an unknown name must not become a metric label
            self._log_refusal({"provider": provider, "method": method}, exc, started)

    def _log_refusal(self, fields: dict[str, Any], exc: WebhookError, started: float) -> None:
        fields.update(outcome=_refusal(exc), status=exc.status_code, reason=str(exc))
        seconds = time.perf_counter() - started
        fields["latency_ms"] = _count(fields["provider"], fields["outcome"], seconds)
        logger.warning("webhook.refused", extra={"fields": fields})

    async def _handle(
        self, provider: str, request: WebhookRequest, answer: "OutcomeFor"
    ) -> Answered:
        started = time.perf_counter()
        adapter = self.adapter(provider)
        fields: dict[str, Any] = {"provider": provider, "method": request.method}
        metrics.WEBHOOKS_IN_FLIGHT.inc()
        try:
            adapter.check(request)
            outcome: Outcome = await answer(adapter, request, fields)
        except WebhookError as exc:
            if isinstance(exc, SignatureError):
                # The first thing to compare with the provider's console when every call is
                # refused behind a proxy (the query string is hidden by the log formatter).
                fields["url"] = request.url
            self._log_refusal(fields, exc, started)
            raise
        finally:
            metrics.WEBHOOKS_IN_FLIGHT.dec()
        seconds = time.perf_counter() - started
        decided_at = time.time()
        return Answered(
            outcome.answer, lambda: self._report(request, fields, outcome, seconds, decided_at)
        )

    def _report(
        self,
        request: WebhookRequest,
        fields: dict[str, Any],
        outcome: Outcome,
        seconds: float,
        decided_at: float,
    ) -> None:
        fields.update(outcome=outcome.outcome, route=outcome.route)
        if outcome.ultravox_call_id:
            fields["ultravox_call_id"] = outcome.ultravox_call_id
        fields["latency_ms"] = _count(fields["provider"], outcome.outcome, seconds)
        level = logging.INFO if outcome.outcome in ("answered", "duplicate") else logging.WARNING
        logger.log(level, f"webhook.{outcome.outcome}", extra={"fields": fields})
        if outcome.call is not None:
            self.lifecycle.decided(
                Decision(
                    outcome.call,
                    outcome.outcome,
                    request.received_at,
                    route=outcome.route,
                    ultravox_call_id=outcome.ultravox_call_id,
                    lifetime_seconds=outcome.lifetime_seconds,
                    reason=fields.get("reason"),
                    decided_at=decided_at,
                )
            )

    async def _answer_call(
        self, adapter: ProviderAdapter, request: WebhookRequest, fields: dict[str, Any]
    ) -> Outcome:
        call = adapter.parse(request)
        fields.update(call_id=call.call_id, **{"from": call.from_number, "to": call.to_number})
        await adapter.hold(request, call)
        route = self.routing.resolve(call)
        if route is None:
            fields["reason"] = "no route for the called number"
            return Outcome(adapter.reject_answer(), "rejected", call=call)
        if isinstance(route.target, RejectTarget):
            return Outcome(adapter.reject_answer(), "rejected", route.name, call=call)
        target = route.target  # bound here so that the closure keeps the narrowed type
        lifetime = lifetime_seconds(target.call_fields)
        created: Created | None = None
        try:
            created = await self.dedupe.create_once(
                call.provider,
                call.call_id,
                lambda: self._create(adapter, target, call, route, lifetime),
            )
            answer = await adapter.stream_answer(call, created.call)
        except _OverLimit:
            fields["reason"] = "over the live-call limit"
            answer = _overflow_answer(adapter, route)
            return Outcome(answer, REFUSED_OVER_LIMIT, route.name, call=call)
        except RepeatAfterJoinWindow as exc:
            fields["reason"] = str(exc)
            return Outcome(adapter.reject_answer(), LATE_REPEAT, route.name, call=call)
        except UltravoxError as exc:
            fields.update(
                ultravox_error=type(exc).__name__,
                ultravox_status=exc.status_code,
                reason=str(exc)[:300],
            )
            return Outcome(
                adapter.fallback_answer(route.fallback), "fallback", route.name, call=call
            )
        except Exception as exc:
            # A store outage while answering, or a bug: the caller still hears the fallback.
            fields.update(error=type(exc).__name__, reason=str(exc)[:300])
            logger.exception("webhook.internal_error", extra={"fields": dict(fields)})
            if created is not None and not created.duplicate:
                self._end_in_background(created.call.call_id)
                await self.lifecycle.release(self.lifecycle.record_id(call), route.name)
            return Outcome(
                adapter.fallback_answer(route.fallback), "fallback", route.name, call=call
            )
        outcome = "duplicate" if created.duplicate else "answered"
        return Outcome(answer, outcome, route.name, created.call.call_id, call, lifetime)

    def _end_in_background(self, call_id: str) -> None:
        """End an Ultravox call nobody will join, without holding up the caller's answer."""
        task = asyncio.create_task(self._end(call_id))
        self._endings.add(task)  # kept referenced until done, as asyncio requires
        task.add_done_callback(self._endings.discard)

    async def _end(self, call_id: str) -> None:
        try:
            await self.ultravox.delete_call(call_id)
        except UltravoxError as exc:  # it still ends by itself at its joinTimeout
            logger.warning(
                "ultravox.end_failed",
                extra={"fields": {"ultravox_call_id": call_id, "error": str(exc)[:300]}},
            )

    async def _answer_fallback(
        self, adapter: ProviderAdapter, request: WebhookRequest, fields: dict[str, Any]
    ) -> Outcome:
        # The caller must hear something even if the request lacks fields the route needs.
        try:
            call: InboundCall | None = adapter.parse(request)
        except WebhookError:
            call = None
        if call is not None:
            fields["call_id"] = call.call_id
            await adapter.hold(request, call)
        plan = self.routing.fallback_for(call) or self._default_fallback
        return Outcome(adapter.fallback_answer(plan), "fallback", call=call)

    async def _create(
        self,
        adapter: ProviderAdapter,
        target: AgentTarget | InlineTarget,
        call: InboundCall,
        route: Route,
        lifetime: float,
    ) -> UltravoxCall:
        """Take the call's live-call slot (`_OverLimit` when none is free), then create its
        Ultravox call (with the transfer tool when the route offers transfers), giving the slot
        back if that fails. Only the webhook that creates the call takes a slot: its repeats
        share the call, and a late repeat creates none."""
        record_id = self.lifecycle.record_id(call)
        if not await self.lifecycle.admit(
            record_id, route.name, route.max_concurrent_calls, lifetime
        ):
            raise _OverLimit
        try:
            offer = self.transfers.offer(route, call) if self.transfers else None
            tools = offer.tools if offer else ()
            created = await create_call(
                self.ultravox, target, build_call_body(target, call, adapter.medium(), tools)
            )
            if self.transfers and offer:
                await self.transfers.remember(offer, created)  # the tool's calls name this call
            return created
        except BaseException:
            await self.lifecycle.release(record_id, route.name)
            raise


def _overflow_answer(adapter: ProviderAdapter, route: Route) -> Answer:
    """What a call over the live-call limit gets: the route's overflow, by default its fallback."""
    overflow = route.overflow_answer
    if isinstance(overflow, RejectTarget):
        return adapter.reject_answer()
    return adapter.fallback_answer(overflow)


def _count(provider: str, outcome: str, seconds: float) -> float:
    """Record the webhook in the metrics; returns its latency in milliseconds for the log."""
    metrics.series(metrics.WEBHOOKS, provider, outcome).inc()
    metrics.series(metrics.WEBHOOK_SECONDS, provider).observe(seconds)
    return round(seconds * 1000, 2)


def _refusal(exc: WebhookError) -> str:
    outcomes = {
        400: "bad_request",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        429: "rate_limited",
    }
    return outcomes.get(exc.status_code, "unavailable")
