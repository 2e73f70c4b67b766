"""Web call endpoints: `POST /web/calls`, `POST /web/calls/{call_id}/end` (and their CORS
preflights), the `/talk/<route>` page and the page's own static files."""

import logging
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ValidationError

from app.api.deps import BridgeDep, SettingsDep
from app.api.webhooks import PayloadTooLarge, read_body
from app.settings import ServiceSettings
from app.web.calls import WebCallRequest, WebCalls
from app.web.ending import EndRequest
from app.web.errors import WebCallEndRefused, WebCallRefused
from app.web.metrics import WEB_CALL_ENDS, WEB_REQUESTS
from app.web.origins import cors_headers, origin_allowed
from app.web.page import TalkPage, content_security_policy, sdk_installed, static_files

logger = logging.getLogger("app.web")

router = APIRouter(tags=["web"])
Request_T = TypeVar("Request_T", bound=BaseModel)

# A web call's request is a route name, a few context fields and a token: 8 KiB is plenty.
MAX_WEB_BODY_BYTES = 8 * 1024
PREFLIGHT_MAX_AGE_SECONDS = 600
STATIC = static_files()
# The page and its files never go to other sites, and are never read as another type.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


async def get_web_calls(request: Request) -> WebCalls:
    web_calls: WebCalls = request.app.state.web_calls
    return web_calls


WebCallsDep = Annotated[WebCalls, Depends(get_web_calls)]


def check_origin(
    request: Request, settings: ServiceSettings, refusal: type[WebCallRefused] = WebCallRefused
) -> str:
    """The request's Origin when it may start (or end) web calls; `refusal` (403) otherwise."""
    origin = request.headers.get("origin")
    if not origin_allowed(origin, request.headers.get("host"), settings):
        raise refusal(
            403,
            "forbidden_origin",
            "this site may not start calls: add its origin to WEB_ALLOWED_ORIGINS"
            if origin
            else "an Origin header is required: web calls are started by a browser",
        )
    return str(origin)


def _parse(
    model: type[Request_T], body: bytes, refusal: type[WebCallRefused] = WebCallRefused
) -> Request_T:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in errors
        )
        raise refusal(422, "bad_request", f"invalid request: {problems}") from None


async def _read_bounded(request: Request, refusal: type[WebCallRefused] = WebCallRefused) -> bytes:
    try:
        return await read_body(request, MAX_WEB_BODY_BYTES)
    except PayloadTooLarge as exc:
        raise refusal(413, "too_large", str(exc)) from None


@router.options("/web/calls")
@router.options("/web/calls/{call_id}/end")
async def web_calls_preflight(request: Request, settings: SettingsDep) -> Response:
    """CORS preflight: allowed origins may POST JSON; others get 403 and no CORS headers."""
    origin = check_origin(request, settings)
    headers = {
        **cors_headers(origin),
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
    }
    return Response(status_code=204, headers=headers)


@router.post("/web/calls", status_code=201)
async def start_web_call(
    request: Request, bridge: BridgeDep, settings: SettingsDep, web_calls: WebCallsDep
) -> JSONResponse:
    """Start a WebRTC call of a route open to the web; the page joins it with `joinUrl`."""
    origin = check_origin(request, settings)
    call_request = _parse(WebCallRequest, await _read_bounded(request))
    client = request.client.host if request.client else None
    call = await web_calls.start(bridge.routing, bridge.ultravox, call_request, client)
    WEB_REQUESTS.labels(outcome="created").inc()
    logger.info(
        "web.created",
        extra={"fields": {"route": call.route, "ultravox_call_id": call.call_id}},
    )
    return JSONResponse(
        {
            "callId": call.call_id,
            "joinUrl": call.join_url,
            "route": call.route,
            "maxDuration": call.max_duration,
            "endSecret": call.end_secret,
        },
        status_code=201,
        headers={**cors_headers(origin), "Cache-Control": "no-store"},
    )


@router.post("/web/calls/{call_id}/end", status_code=204)
async def end_web_call(
    call_id: str,
    request: Request,
    bridge: BridgeDep,
    settings: SettingsDep,
    web_calls: WebCallsDep,
) -> Response:
    """End a web call for its page (the `endSecret` it was given), freeing its live-call slot
    at once. Ending a call that was already ended is harmless: 204 again."""
    origin = check_origin(request, settings, WebCallEndRefused)
    end = _parse(EndRequest, await _read_bounded(request, WebCallEndRefused), WebCallEndRefused)
    ending = await web_calls.end(bridge.ultravox, call_id, end.endSecret)
    WEB_CALL_ENDS.labels(outcome="already_ended" if ending is None else "ended").inc()
    if ending is not None:
        logger.info("web.ended", extra={"fields": {"ultravox_call_id": call_id, "how": ending}})
    return Response(status_code=204, headers=cors_headers(origin))


@router.get("/talk/{route}", response_class=HTMLResponse)
async def talk_page(route: str, bridge: BridgeDep, settings: SettingsDep) -> Response:
    """The page a visitor (or a site's iframe) talks to route `route` with."""
    headers = {**COMMON_HEADERS, "Cache-Control": "no-store"}
    found = bridge.routing.web_route(route)
    if found is None or found.web is None:
        return Response(
            f"no route named {route!r} is open to the web\n",
            status_code=404,
            media_type="text/plain",
            headers=headers,
        )
    if not sdk_installed():
        return Response(
            "the page's Ultravox client SDK is not installed: run `make web` (or build the "
            "Docker image) and restart\n",
            status_code=503,
            media_type="text/plain",
            headers=headers,
        )
    page = TalkPage(found.name, tuple(sorted(found.web.context_fields)))
    headers.update(
        {
            "Content-Security-Policy": content_security_policy(settings),
            "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
        }
    )
    return HTMLResponse(page.render(), headers=headers)


@router.get("/web/static/{path:path}")
async def static_file(path: str) -> Response:
    """The page's script, style and the SDK's files; anything else is 404."""
    found = STATIC.get(path)
    if found is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    media_type = "text/css" if found.suffix == ".css" else "text/javascript"
    headers = {**COMMON_HEADERS, "Cache-Control": "public, max-age=300"}
    return FileResponse(found, media_type=media_type, headers=headers)
