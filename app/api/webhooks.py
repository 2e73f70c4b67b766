"""Provider webhook endpoints: one code path for every provider, chosen by the URL's first part."""

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response

from app.api.deps import BridgeDep, SettingsDep
from app.calltypes import Answer, WebhookError, WebhookRequest, check_field_count
from app.inbound import Bridge
from app.settings import ServiceSettings

router = APIRouter(tags=["webhooks"])

MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(WebhookError):
    status_code = 413


def signed_url(request: Request, public_base_url: str | None) -> str:
    """The URL the provider requested, as it signed it. Behind a TLS-terminating proxy the app
    sees another scheme and host, so the configured public base replaces them."""
    if public_base_url is None:
        return str(request.url)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = public_base_url + raw_path.decode("latin-1")
    query = request.scope.get("query_string", b"")
    return f"{url}?{query.decode('latin-1')}" if query else url


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body; `PayloadTooLarge` past `limit` bytes, whatever Content-Length says."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
    return bytes(body)


async def webhook_request(request: Request, public_base_url: str | None) -> WebhookRequest:
    """The request as the provider adapters read it. A query or form of more fields than any
    provider sends is refused here (`TooManyFields`), before any adapter's signature check."""
    query: bytes = request.scope.get("query_string", b"")
    if query:
        check_field_count(query.count(b"&") + 1, "query")
    body = await read_body(request) if request.method == "POST" else b""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if body and content_type == "application/x-www-form-urlencoded":
        check_field_count(body.count(b"&") + 1, "form")
    return WebhookRequest(
        method=request.method,
        url=signed_url(request, public_base_url),
        headers=request.headers,
        query=request.query_params.multi_items(),
        body=body,
        received_at=time.time(),
    )


def _response(answer: Answer) -> Response:
    return Response(content=answer.body, media_type=answer.media_type)


async def _serve(
    provider: str,
    request: Request,
    bridge: Bridge,
    settings: ServiceSettings,
    answer: Callable[[str, WebhookRequest], Awaitable[Answer]],
) -> Response:
    started = time.perf_counter()
    try:
        webhook = await webhook_request(request, settings.public_base_url)
    except WebhookError as exc:
        bridge.refused(provider, request.method, exc, started)
        raise
    # A WebhookError from here on has been logged and counted by the bridge.
    return _response(await answer(provider, webhook))


@router.api_route("/{provider}/incoming", methods=["GET", "POST"])
async def incoming(
    provider: str, request: Request, bridge: BridgeDep, settings: SettingsDep
) -> Response:
    """A provider's voice webhook for a new call: answered with a stream to an Ultravox agent."""
    return await _serve(provider, request, bridge, settings, bridge.incoming)


@router.api_route("/{provider}/fallback", methods=["GET", "POST"])
async def fallback(
    provider: str, request: Request, bridge: BridgeDep, settings: SettingsDep
) -> Response:
    """A provider's fallback URL: the fallback answer, without calling Ultravox."""
    return await _serve(provider, request, bridge, settings, bridge.fallback)
