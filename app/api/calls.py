"""Outbound calls: `POST /calls` places one (bearer-token protected), and
`/{provider}/outbound/{reference}` answers a provider that fetches the call's instructions once
the callee picks up."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.deps import BridgeDep, SettingsDep
from app.api.webhooks import read_body, refusal, webhook_request
from app.auth import matches_any
from app.outbound import (
    OutboundCallRequest,
    OutboundCalls,
    OutboundError,
    PendingAnswer,
    pending_key,
)
from app.providers.base import WebhookError
from app.store import Store, StoreError
from app.ultravox import UltravoxCall

logger = logging.getLogger("app.outbound")

router = APIRouter(tags=["outbound"])


class APIError(Exception):
    """An answer to an API client that is not a placed call."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(get_store)]


def authorize(request: Request, settings: SettingsDep) -> OutboundCalls:
    """The outbound service, for a request that carries one of BRIDGE_API_TOKENS."""
    outbound: OutboundCalls | None = getattr(request.app.state, "outbound", None)
    if not settings.bridge_api_tokens or outbound is None:
        raise APIError(
            404,
            "outbound calling is disabled: set BRIDGE_API_TOKENS (comma-separated secret "
            "tokens) and restart the service to enable POST /calls",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    presented = given.strip().encode() if scheme.lower() == "bearer" else b""
    tokens = [token.get_secret_value().encode() for token in settings.bridge_api_tokens]
    if not matches_any(presented, tokens):
        raise APIError(
            401,
            "a valid API token is required: send Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="ultravox-bridge"'},
        )
    return outbound


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@router.post("/calls", status_code=201)
async def place_call(
    request: Request, bridge: BridgeDep, settings: SettingsDep, store: StoreDep
) -> JSONResponse:
    """Phone someone: the agent of the route for the `from` number (or the route or agent the
    body names) talks to them once they answer."""
    # The token is checked before the body is read: strangers learn nothing and cost nothing.
    try:
        outbound = authorize(request, settings)
        body = await read_body(request)
    except APIError as exc:
        return _error(exc)
    except WebhookError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
    try:
        call_request = OutboundCallRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return JSONResponse({"detail": errors}, status_code=422)
    try:
        placed = await outbound.place(call_request, bridge, store)
    except OutboundError as exc:
        headers = {}
        if "retryAfter" in exc.details:
            headers["Retry-After"] = str(round(exc.details["retryAfter"]))
        return JSONResponse(
            {"detail": str(exc), **exc.details}, status_code=exc.status_code, headers=headers
        )
    return JSONResponse(
        {
            "ultravoxCallId": placed.ultravox_call_id,
            "providerCallId": placed.provider_call_id,
            "state": placed.state,
            "provider": placed.provider,
            "to": placed.to_number,
            "from": placed.from_number,
        },
        status_code=201,
    )


@router.api_route("/{provider}/outbound/{reference}", methods=["GET", "POST"])
async def outbound_answer(
    provider: str,
    reference: str,
    request: Request,
    bridge: BridgeDep,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    """The answer URL of an outbound call: the stream to its Ultravox call, once. The provider's
    signature is checked before the single-use reference is spent."""
    try:
        adapter = bridge.adapter(provider)
        webhook = await webhook_request(request, settings.public_base_url)
        adapter.check(webhook)
        call = adapter.parse(webhook)
        await adapter.hold(webhook, call)
    except WebhookError as exc:
        return refusal(exc)
    fields = {"provider": provider, "call_id": call.call_id}
    try:
        stored = await store.take(pending_key(provider, reference))
    except StoreError as exc:
        fields["reason"] = str(exc)
        stored = None
    if stored is None:
        # Expired (Ultravox has ended the call) or already answered: hang up, do not stream.
        logger.warning("outbound.answer_unknown", extra={"fields": fields})
        answer = adapter.reject_answer()
    else:
        pending = PendingAnswer.loads(stored)
        fields["ultravox_call_id"] = pending.ultravox_call_id
        logger.info("outbound.answered", extra={"fields": fields})
        joined = UltravoxCall(pending.ultravox_call_id, pending.join_url, raw={})
        answer = await adapter.stream_answer(call, joined)
    return Response(content=answer.body, media_type=answer.media_type)
