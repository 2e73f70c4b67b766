"""The web call flow: a browser's request -> route open to the web -> limits (token, client,
whole service, live calls) -> Ultravox call with the WebRTC medium -> joinUrl for the page.

Every refusal happens before Ultravox is asked, so a refused request costs nothing. The body
is the phone calls' (`build_call_body`), less the phone numbers a browser does not have."""

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.calltypes import InboundCall
from app.client_address import client_key
from app.providers import PROVIDER_NAMES
from app.records.lifecycle import CallLifecycle
from app.routing import AgentTarget, RoutingTable
from app.routing.table import WebAccess
from app.routing.web import WEB_PROVIDER
from app.settings import ServiceSettings
from app.ultravox import UltravoxClient, UltravoxError, UltravoxHTTPError
from app.ultravox_request import build_call_body, create_call
from app.web.ending import Ending, end_live_call, remember_live_call
from app.web.errors import WebCallRefused
from app.web.limits import Limits
from app.web.tokens import TokenRefused, verify_token

logger = logging.getLogger("app.web")

WEB_MEDIUM: dict[str, Any] = {"webRtc": {}}
# Metadata and templateContext keys of a phone call that a web call has no value for.
PHONE_NUMBER_KEYS = ("callerNumber", "calledNumber")
MAX_CONTEXT_VALUE_CHARS = 500
# Ultravox's joinTimeout when the route sets none; a live-call slot covers it too.
DEFAULT_JOIN_TIMEOUT_SECONDS = 30.0
LIVE_CALLS_KEY = "live"


class WebCallRequest(BaseModel):
    """The body of `POST /web/calls`."""

    model_config = ConfigDict(extra="forbid")

    route: str = Field(min_length=1, max_length=64)
    context: dict[str, str] = Field(default_factory=dict, max_length=20)
    token: str | None = Field(default=None, max_length=1024)


@dataclass(frozen=True)
class WebCall:
    """A web call Ultravox created: what the page needs to join it."""

    call_id: str
    join_url: str
    route: str
    max_duration: str
    end_secret: str


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def web_max_duration(access: WebAccess, settings: ServiceSettings) -> str:
    """The route's web maxDuration; else the shorter of the route's own and WEB_MAX_DURATION."""
    if access.max_duration is not None:
        return access.max_duration
    route_max = access.target.call_fields.get("maxDuration")
    if isinstance(route_max, str) and _seconds(route_max) < settings.web_max_duration_seconds:
        return route_max
    return settings.web_max_duration


# What a call record's provider may be: a phone provider's name, or the web's for a call a page
# started (the calls Ultravox's events may make records for, the console's provider filter).
RECORDED_PROVIDERS = frozenset({*PROVIDER_NAMES, WEB_PROVIDER})


def new_web_call_id() -> str:
    """The id a web call has in its metadata (`providerCallId`) and its record."""
    return f"web-{uuid.uuid4()}"


def web_call_body(
    access: WebAccess,
    route_name: str,
    context: dict[str, str],
    max_duration: str,
    subject: str | None = None,
    call_id: str | None = None,
) -> dict[str, Any]:
    """The Ultravox request of one web call of a route: the phone call's body with the WebRTC
    medium, without phone numbers, with the page's context and the web maxDuration."""
    call_id = call_id or new_web_call_id()
    call = InboundCall(WEB_PROVIDER, call_id, from_number="", to_number="")
    body = build_call_body(access.target, call, WEB_MEDIUM)
    values = {"provider": WEB_PROVIDER, **dict.fromkeys(access.context_fields, ""), **context}
    body.update({key: template.fill(values) for key, template in access.templated.items()})
    metadata: dict[str, str] = body["metadata"]
    for key in PHONE_NUMBER_KEYS:
        metadata.pop(key, None)
    metadata["route"] = route_name
    if subject is not None:
        metadata["webSubject"] = subject
    if isinstance(access.target, AgentTarget):
        template_context: dict[str, Any] = body["templateContext"]
        for key in PHONE_NUMBER_KEYS:
            template_context.pop(key, None)
        template_context.update(context)
    body["maxDuration"] = max_duration
    return body


class WebCalls:
    """Starts web calls within the limits the settings set."""

    def __init__(
        self, settings: ServiceSettings, limits: Limits, lifecycle: CallLifecycle | None = None
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.lifecycle = lifecycle  # the call records

    async def start(
        self,
        routing: RoutingTable,
        ultravox: UltravoxClient,
        request: WebCallRequest,
        client: str | None,
    ) -> WebCall:
        """Create the call `request` asks for, or raise `WebCallRefused`."""
        settings = self.settings
        route = routing.web_route(request.route)
        if route is None or route.web is None:
            raise WebCallRefused(
                404, "not_found", f"no route named {request.route!r} is open to the web"
            )
        access = route.web
        unknown = sorted(set(request.context) - access.context_fields)
        if unknown:
            allowed = ", ".join(sorted(access.context_fields)) or "none"
            raise WebCallRefused(
                422,
                "bad_request",
                f"context fields not accepted by this route: {', '.join(unknown)} "
                f"(accepted: {allowed})",
            )
        too_long = sorted(k for k, v in request.context.items() if len(v) > MAX_CONTEXT_VALUE_CHARS)
        if too_long:
            raise WebCallRefused(
                422,
                "bad_request",
                f"context values over {MAX_CONTEXT_VALUE_CHARS} characters: {', '.join(too_long)}",
            )
        subject = None
        token_signature = None
        if settings.web_call_secret is not None:
            try:
                token = verify_token(
                    request.token or "",
                    settings.web_call_secret.get_secret_value(),
                    route.name,
                    settings.web_token_max_ttl_seconds,
                )
            except TokenRefused as exc:
                raise WebCallRefused(403, "forbidden_token", str(exc)) from None
            subject, token_signature = token.subject, token.signature
        wait = await self.limits.take(
            f"client:{client_key(client)}",
            settings.web_ip_burst,
            settings.web_ip_calls_per_hour / 3600,
        )
        if wait:
            raise WebCallRefused(
                429, "rate_limited_client", "too many web calls from your address", wait
            )
        wait = await self.limits.take(
            "global", settings.web_global_burst, settings.web_global_calls_per_hour / 3600
        )
        if wait:
            raise WebCallRefused(
                429, "rate_limited_global", "too many web calls right now: try again later", wait
            )
        max_duration = web_max_duration(access, settings)
        join_timeout = access.target.call_fields.get("joinTimeout")
        joining = _seconds(join_timeout) if join_timeout else DEFAULT_JOIN_TIMEOUT_SECONDS
        # A slot is held for as long as the call can live (it ends by its maxDuration at most),
        # unless its page ends it sooner (`end`).
        slot = str(uuid.uuid4())
        holding = joining + _seconds(max_duration)
        wait = await self.limits.hold_slot(
            LIVE_CALLS_KEY, slot, settings.web_max_concurrent_calls, holding
        )
        if wait:
            raise WebCallRefused(
                429, "at_capacity", "all web call lines are busy: try again later", wait
            )
        if token_signature is not None and not await self.limits.first_use(
            f"token:{token_signature}", settings.web_token_max_ttl_seconds
        ):
            await self.limits.release_slot(LIVE_CALLS_KEY, slot)
            raise WebCallRefused(403, "forbidden_token", "the web call token was already used")
        call_id = new_web_call_id()
        body = web_call_body(access, route.name, request.context, max_duration, subject, call_id)
        try:
            created = await create_call(ultravox, access.target, body)
        except UltravoxError as exc:
            await self.limits.release_slot(LIVE_CALLS_KEY, slot)
            if self.lifecycle is not None:
                self.lifecycle.web_call_failed(WEB_PROVIDER, route.name, type(exc).__name__)
            logger.warning(
                "web.ultravox_failed",
                extra={
                    "fields": {
                        "route": route.name,
                        "ultravox_error": type(exc).__name__,
                        "ultravox_status": exc.status_code,
                    }
                },
            )
            if exc.retryable:
                retry_after = exc.retry_after if isinstance(exc, UltravoxHTTPError) else None
                raise WebCallRefused(
                    503, "ultravox_failed", "the agent is busy: try again shortly", retry_after or 5
                ) from exc
            raise WebCallRefused(502, "ultravox_failed", "the agent could not be reached") from exc
        end_secret = await remember_live_call(self.limits, created.call_id, slot, holding)
        if self.lifecycle is not None:
            self.lifecycle.web_call_started(
                WEB_PROVIDER, call_id, created.call_id, route.name, holding
            )
        return WebCall(created.call_id, created.join_url, route.name, max_duration, end_secret)

    async def end(self, ultravox: UltravoxClient, call_id: str, end_secret: str) -> Ending | None:
        """End a web call for the page that started it, freeing its slot at once: how this
        request ended it, None when it had been ended already (`WebCallEndRefused`)."""
        ending = await end_live_call(self.limits, ultravox, LIVE_CALLS_KEY, call_id, end_secret)
        if ending is not None and self.lifecycle is not None:
            self.lifecycle.web_call_ended(call_id, ending)
        return ending
