"""How errors become HTTP responses, in one place: `main.py` registers these handlers, and
routes raise. Providers get plain text (their consoles show it); API clients get JSON.

Two refusals come before any route: oversized headers (431, `header_limit.py`, which answers
with `plain_refusal` before anything reads them) and a request head or body too slow or too
large to read (408, 431), which `app/http_protocol.py` writes itself, before the application
sees a request."""

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from app.calltypes import WebhookError
from app.outbound.errors import OutboundError


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


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]
EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    WebhookError: webhook_refused,
    APIError: api_refused,
    OutboundError: outbound_failed,
}
