"""Provider webhook endpoints: one code path for every provider, chosen by the URL's first part."""

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from app.calltypes import Answer, WebhookError, WebhookRequest, check_field_count
from app.inbound import Bridge, UnknownProvider
from app.settings import ServiceSettings

router = APIRouter(tags=["webhooks"])

MAX_BODY_BYTES = 64 * 1024


class PayloadTooLarge(WebhookError):
    status_code = 413


class BodyCutOff(WebhookError):
    """The client hung up (or missed the body deadline) before its body ended: a refusal like
    any other, so that it costs one warning line, not an ASGI error with a traceback."""

    status_code = 400


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
    """The request's body; `PayloadTooLarge` as soon as it is declared or read past `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
    except ClientDisconnect:
        raise BodyCutOff("the connection closed before the body ended") from None
    return bytes(body)


async def webhook_request(
    request: Request, public_base_url: str | None, path_key: str | None = None
) -> WebhookRequest:
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
        path_key=path_key,
        client=request.client.host if request.client else None,
    )


def answer_response(answer: Answer) -> Response:
    return Response(
        content=answer.body, media_type=answer.media_type, status_code=answer.status_code
    )


async def _serve(
    provider: str,
    request: Request,
    bridge: Bridge,
    settings: ServiceSettings,
    answer: Callable[[str, WebhookRequest], Awaitable[Answer]],
    path_key: str | None = None,
) -> Response:
    started = time.perf_counter()
    if path_key is not None and not bridge.adapter(provider).takes_path_key:
        raise UnknownProvider(f"{provider} webhooks take no key in their path")
    try:
        webhook = await webhook_request(request, settings.public_base_url, path_key)
    except WebhookError as exc:
        bridge.refused(provider, request.method, exc, started)
        raise
    # A WebhookError from here on has been logged and counted by the bridge.
    return answer_response(await answer(provider, webhook))


async def incoming(request: Request) -> Response:
    """A provider's voice webhook for a new call: answered with a stream to an Ultravox agent."""
    bridge: Bridge = request.app.state.bridge
    return await _serve(_provider(request), request, bridge, _settings(request), bridge.incoming)


async def incoming_with_key(request: Request) -> Response:
    """The same, for a provider that signs nothing and is authenticated by a secret in the
    URL's path (Exotel); 404 for the others."""
    bridge: Bridge = request.app.state.bridge
    path_key: str = request.path_params["path_key"]
    return await _serve(
        _provider(request), request, bridge, _settings(request), bridge.incoming, path_key
    )


async def fallback(request: Request) -> Response:
    """A provider's fallback URL: the fallback answer, without calling Ultravox."""
    bridge: Bridge = request.app.state.bridge
    return await _serve(_provider(request), request, bridge, _settings(request), bridge.fallback)


def _provider(request: Request) -> str:
    provider: str = request.path_params["provider"]
    return provider


def _settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


def _webhook_route(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    route = Route(path, endpoint, methods=["GET", "POST"])
    route.methods = {"GET", "POST"}  # Starlette adds HEAD to a GET route; webhooks have none
    return route


# Plain Starlette routes: FastAPI's dependency solving and validation cost about a tenth of a
# webhook's CPU (docs/benchmarks.md) for one path part and two attribute reads.
router.routes += [
    _webhook_route("/{provider}/incoming", incoming),
    _webhook_route("/{provider}/incoming/{path_key}", incoming_with_key),
    _webhook_route("/{provider}/fallback", fallback),
]
