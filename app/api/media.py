"""Media sockets of relayed providers (`/{provider}/media[/{reference}]`) and their signed call
events (`/{provider}/events`): one code path for every provider, chosen by the URL's first part."""

import logging
import time

from fastapi import APIRouter, Request, Response, WebSocket

from app.api.deps import BridgeDep, RecordsDep, SettingsDep
from app.api.status import record_status
from app.api.webhooks import webhook_request
from app.calltypes import InboundCall, MalformedWebhook, WebhookError, WebhookRequest
from app.inbound import Bridge, UnknownProvider
from app.providers.media import CallEvents, MediaEndpoint
from app.relay.relay import Relay
from app.relayed_calls import create_relayed_call
from app.ultravox import UltravoxCall

router = APIRouter(tags=["media"])
logger = logging.getLogger("app.media")

# Close code for a refused socket (before acceptance the server answers HTTP 403 instead).
POLICY_VIOLATION = 1008


def _handshake(websocket: WebSocket, public_base_url: str | None) -> WebhookRequest:
    url = str(websocket.url)
    if public_base_url is not None:
        query = websocket.url.query
        url = public_base_url + websocket.url.path + (f"?{query}" if query else "")
    return WebhookRequest(
        method="GET",
        url=url,
        headers=websocket.headers,
        query=websocket.query_params.multi_items(),
        body=b"",
        received_at=time.time(),
    )


@router.websocket("/{provider}/media")
@router.websocket("/{provider}/media/{reference}")
async def media(websocket: WebSocket, provider: str, reference: str | None = None) -> None:
    """A platform's media socket for one call, relayed to and from the call's Ultravox socket."""
    endpoints: dict[str, MediaEndpoint] = websocket.app.state.media_endpoints
    bridge: Bridge = websocket.app.state.bridge
    endpoint = endpoints.get(provider)
    fields = {"provider": provider}
    if endpoint is None:
        logger.warning("media.refused", extra={"fields": {**fields, "reason": "unknown provider"}})
        await websocket.close(POLICY_VIOLATION)
        return
    handshake = _handshake(websocket, websocket.app.state.settings.public_base_url)
    try:
        admission = await endpoint.admit(handshake, reference)
    except WebhookError as exc:
        logger.warning("media.refused", extra={"fields": {**fields, "reason": str(exc)}})
        await websocket.close(POLICY_VIOLATION)
        return
    offered = [
        name.strip()
        for name in websocket.headers.get("sec-websocket-protocol", "").split(",")
        if name.strip()
    ]
    await websocket.accept(subprotocol=endpoint.subprotocol(offered))

    async def start_call(call: InboundCall, medium: dict[str, object]) -> UltravoxCall | None:
        return await create_relayed_call(bridge, call, medium)

    # Counted from the accept, call set-up included: shutdown waits for these calls.
    websocket.app.state.live_relays += 1
    try:
        plan = await endpoint.open(websocket, admission, start_call)
        if plan is not None:
            ended_by = await Relay(plan.platform, plan.join_url, plan.ids).run()
            bridge.lifecycle.relay_ended(plan.ids.provider, plan.ids.provider_call_id, ended_by)
    finally:
        websocket.app.state.live_relays -= 1


@router.api_route("/{provider}/events", methods=["GET", "POST"])
@router.api_route("/{provider}/events/{path_key}", methods=["GET", "POST"])
async def events(
    provider: str,
    request: Request,
    bridge: BridgeDep,
    settings: SettingsDep,
    records: RecordsDep,
    path_key: str | None = None,
) -> Response:
    """A provider's call progress events (answered, completed...), logged, and written to the
    call's record when they report its status; with a key in the path for a provider
    authenticated by a secret in its URLs."""
    adapter = bridge.adapters.get(provider)
    if not isinstance(adapter, CallEvents) or (path_key is not None and not adapter.takes_path_key):
        raise UnknownProvider(f"no events endpoint for {provider!r}")
    try:
        webhook = await webhook_request(request, settings.public_base_url, path_key)
        adapter.check(webhook)
        fields = adapter.event_fields(webhook)
    except WebhookError as exc:
        logger.warning(
            "call.event_refused",
            extra={"fields": {"provider": provider, "status": exc.status_code, "reason": str(exc)}},
        )
        raise
    logger.info("call.event", extra={"fields": {"provider": provider, **fields}})
    try:
        return await record_status(records, adapter, webhook)
    except MalformedWebhook:  # an event without a call status (DTMF, transfer...)
        return Response(status_code=204)
