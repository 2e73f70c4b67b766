"""How errors become HTTP responses, in one place: `main.py` registers these handlers, and
routes raise. Providers get plain text (their consoles show it); API clients get JSON.

Two refusals come before any route: oversized headers (431, `header_limit.py`, which answers
with `plain_refusal` before anything reads them) and a request head or body too slow or too
large to read (408, 431), which `app/http_protocol.py` writes itself, before the application
sees a request."""

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from app.calltypes import WebhookError
from app.outbound.errors import OutboundError
from app.settings import ServiceSettings
from app.transfer.tool import ToolRefused
from app.web.errors import WebCallEndRefused, WebCallRefused
from app.web.metrics import WEB_CALL_ENDS, WEB_REQUESTS
from app.web.origins import cors_headers, origin_allowed

web_logger = logging.getLogger("app.web")


class RecordsNotWritten(WebhookError):
    """An event or status report the call records could not store now; its sender retries
    (Ultravox up to 10 times, Telnyx at its failover URL)."""

    status_code = 503


class APIError(Exception):
    """An answer to an API client that is not a placed call."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


def plain_refusal(status_code: int, reason: str, headers: Mapping[str, str] = {}) -> Response:
    """A refusal as plain text: the reason on one line, which a provider's console shows."""
    return Response(
        f"{reason}\n", status_code=status_code, headers=dict(headers), media_type="text/plain"
    )


async def webhook_refused(request: Request, exc: WebhookError) -> Response:
    """A refused webhook, media handshake or event: the reason, for the provider's console, with
    the headers the refusal calls for (`Allow` on a 405)."""
    return plain_refusal(exc.status_code, str(exc), exc.headers)


async def api_refused(request: Request, exc: APIError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def outbound_failed(request: Request, exc: OutboundError) -> JSONResponse:
    """A call that was not placed, with what the client needs to decide what to do next."""
    headers = {}
    if "retryAfter" in exc.details:
        headers["Retry-After"] = str(round(exc.details["retryAfter"]))
    return JSONResponse(
        {"detail": str(exc), **exc.details}, status_code=exc.status_code, headers=headers
    )


async def web_call_refused(request: Request, exc: WebCallRefused) -> JSONResponse:
    """A refused request to start (or end) a web call, counted by outcome and logged. A page of
    an allowed origin may read why (CORS headers), and learns from `Retry-After` when trying
    again can work."""
    origin = request.headers.get("origin")
    ending = isinstance(exc, WebCallEndRefused)
    (WEB_CALL_ENDS if ending else WEB_REQUESTS).labels(outcome=exc.outcome).inc()
    web_logger.warning(
        "web.end_refused" if ending else "web.refused",
        extra={
            "fields": {
                "outcome": exc.outcome,
                "status": exc.status_code,
                "reason": str(exc),
                "origin": origin or "none",
                "client": request.client.host if request.client else None,
            }
        },
    )
    headers = dict(exc.headers)
    settings: ServiceSettings = request.app.state.settings
    if origin and origin_allowed(origin, request.headers.get("host"), settings):
        headers.update(cors_headers(origin))
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)


async def tool_refused(request: Request, exc: ToolRefused) -> JSONResponse:
    """A refused call of the agent's transfer tool, as JSON that names the refusal."""
    return JSONResponse({"result": exc.result}, status_code=exc.status_code)


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    WebhookError: webhook_refused,
    APIError: api_refused,
    OutboundError: outbound_failed,
    WebCallRefused: web_call_refused,
    ToolRefused: tool_refused,
}
