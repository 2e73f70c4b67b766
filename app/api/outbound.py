"""Outbound calls: `POST /calls` places one (bearer-token protected), and
`/{provider}/outbound/{reference}` answers a provider that fetches the call's instructions once
the callee picks up."""

import logging

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from app.api.deps import BridgeDep, SettingsDep, StoreDep
from app.api.errors import APIError
from app.api.webhooks import PayloadTooLarge, read_body, webhook_request
from app.auth import matches_any
from app.outbound.flow import OutboundCalls
from app.outbound.pending import PendingAnswer, pending_key
from app.outbound.request import OutboundCallRequest
from app.store import StoreError
from app.ultravox import UltravoxCall

logger = logging.getLogger("app.outbound")

router = APIRouter(tags=["outbound"])


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


@router.post("/calls", status_code=201)
async def place_call(
    request: Request, bridge: BridgeDep, settings: SettingsDep, store: StoreDep
) -> JSONResponse:
    """Phone someone: the agent of the route for the `from` number (or the route or agent the
    body names) talks to them once they answer."""
    # The token is checked before the body is read: strangers learn nothing and cost nothing.
    outbound = authorize(request, settings)
    try:
        body = await read_body(request)
    except PayloadTooLarge as exc:
        raise APIError(exc.status_code, str(exc)) from exc
    try:
        call_request = OutboundCallRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(errors) from exc
    placed = await outbound.place(call_request, bridge, store)
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
    adapter = bridge.adapter(provider)
    webhook = await webhook_request(request, settings.public_base_url)
    adapter.check(webhook)
    call = adapter.parse(webhook)
    await adapter.hold(webhook, call)
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
