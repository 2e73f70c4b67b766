"""Provider webhook endpoints: one code path for every provider, chosen by the URL's first part.

The call webhooks (`/{provider}/incoming`, `/{provider}/incoming/{key}`, `/{provider}/fallback`)
are the service's hot path: `WebhookDispatch` answers them as a plain ASGI application in front
of the framework, whose routing, request objects and middleware cost a webhook several times
what answering it does (docs/benchmarks.md). It sits inside the header limit and the request id
(app/main.py), refuses as the framework's error handlers would (plain text, `headers` of the
refusal), and logs, counts and records each webhook a moment after its answer is on its way
(`Reports`). The other provider routes (status, media, transfer, outbound) read requests with
`webhook_request`."""

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.datastructures import URL, Headers, State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import plain_refusal
from app.calltypes import Answer, WebhookError, WebhookRequest, check_field_count, parse_fields
from app.inbound import Answered, Bridge, UnknownProvider
from app.settings import ServiceSettings

logger = logging.getLogger("app.api.webhooks")

MAX_BODY_BYTES = 64 * 1024
# How long after its answer a webhook's log line, metrics and call record are made, together
# with those of the webhooks answered meanwhile (`Reports`).
REPORT_DELAY_SECONDS = 0.02

# The methods providers send webhooks with; any other is a 405 (HEAD included).
WEBHOOK_METHODS = ("GET", "POST")


class PayloadTooLarge(WebhookError):
    status_code = 413


class BodyCutOff(WebhookError):
    """The client hung up (or missed the body deadline) before its body ended: a refusal like
    any other, so that it costs one warning line, not an ASGI error with a traceback."""

    status_code = 400


def signed_url(scope: Scope, public_base_url: str | None) -> str:
    """The URL the provider requested, as it signed it. Behind a TLS-terminating proxy the app
    sees another scheme and host, so the configured public base replaces them."""
    if public_base_url is None:
        return str(URL(scope=scope))
    raw_path = scope.get("raw_path") or scope["path"].encode()
    url = public_base_url + raw_path.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{url}?{query.decode('latin-1')}" if query else url


async def receive_body(receive: Receive, declared: str, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, `declared` its Content-Length; `PayloadTooLarge` as soon as it is
    declared or read past `limit`, `BodyCutOff` when the client leaves before its end."""
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes")
    # A body in several messages, gathered in place: adding each to a copy of what came before
    # would cost its size squared when a client sends it a byte at a time.
    gathered: bytearray | None = None
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyCutOff("the connection closed before the body ended")
        chunk: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if gathered is None and not more:  # the whole body in one message, as nearly always
            if len(chunk) > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
            return chunk
        if gathered is None:
            gathered = bytearray()
        gathered += chunk
        if len(gathered) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        if not more:
            return bytes(gathered)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """A routed request's body, within `limit` (`receive_body`)."""
    return await receive_body(request.receive, request.headers.get("content-length", ""), limit)


async def webhook_from(
    scope: Scope,
    receive: Receive,
    headers: Headers,
    public_base_url: str | None,
    path_key: str | None = None,
) -> WebhookRequest:
    """The request as the provider adapters read it. A query or form of more fields than any
    provider sends is refused here (`TooManyFields`), before any adapter's signature check."""
    method: str = scope["method"]
    query: bytes = scope.get("query_string", b"")
    if query:
        check_field_count(query.count(b"&") + 1, "query")
    body = b""
    if method == "POST":
        body = await receive_body(receive, headers.get("content-length", ""))
    content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if body and content_type == "application/x-www-form-urlencoded":
        check_field_count(body.count(b"&") + 1, "form")
    client = scope.get("client")
    return WebhookRequest(
        method=method,
        url=signed_url(scope, public_base_url),
        headers=headers,
        query=parse_fields(query.decode("latin-1")) if query else (),
        body=body,
        received_at=time.time(),
        path_key=path_key,
        client=client[0] if client else None,
    )


async def webhook_request(
    request: Request, public_base_url: str | None, path_key: str | None = None
) -> WebhookRequest:
    """A routed request as the provider adapters read it (`webhook_from`)."""
    return await webhook_from(
        request.scope, request.receive, request.headers, public_base_url, path_key
    )


def answer_response(answer: Answer) -> Response:
    return Response(
        content=answer.body, media_type=answer.media_type, status_code=answer.status_code
    )


async def send_answer(answer: Answer, send: Send) -> None:
    """`answer_response(answer)`'s two ASGI messages, the same headers in the same order,
    without building a framework response for each webhook."""
    headers = [
        (b"content-length", b"%d" % len(answer.body)),
        (b"content-type", _content_type(answer.media_type)),
    ]
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


@functools.lru_cache(maxsize=16)
def _content_type(media_type: str) -> bytes:
    """As Starlette's `Response` writes it: text types say their charset."""
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        media_type += "; charset=utf-8"
    return media_type.encode("latin-1")


Serve = Callable[[str, WebhookRequest], Awaitable[Answered]]


def _refusal(exc: WebhookError) -> Response:
    return plain_refusal(exc.status_code, str(exc), exc.headers)


class Reports:
    """The answered webhooks' reports (`Answered.report`: log line, metrics, call record), made
    `delay` seconds after the first of them, all at once, each in the context (request id) of
    its own webhook.

    Webhooks come in bursts: a provider's retries, a campaign, or in the benchmark fifty
    connections whose answers keep arriving together. Made at once, each report would stand
    between the next webhook of the burst and its answer; a moment later, they are made after
    the burst's answers are out. With it, the added p50 at 50 connections was lower in 13 of 16
    rounds against the code before (docs/benchmarks.md). `flush` makes what is pending at once (at
    shutdown, before the records are closed)."""

    def __init__(self, delay: float = REPORT_DELAY_SECONDS) -> None:
        self.delay = delay
        self._pending: list[tuple[contextvars.Context, Callable[[], None]]] = []
        self._timer: asyncio.TimerHandle | None = None

    def defer(self, report: Callable[[], None]) -> None:
        self._pending.append((contextvars.copy_context(), report))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for context, report in pending:
            try:
                context.run(report)
            except Exception:
                # One report's failure must not cost the others theirs.
                context.run(logger.exception, "webhook.report_failed")


class WebhookDispatch:
    """Pure ASGI: answers the call webhooks itself and hands every other request to `app`.

    `state` is the application's state, which holds the bridge, the settings and the
    `Reports` from start-up on (read per request)."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path + "/"):
            # As the framework's routes match it: without the root path (`uvicorn --root-path`)
            # it starts with; as it is when a proxy stripped the prefix already.
            path = path[len(root_path) :]
        parts = path.split("/")
        if not _is_webhook(parts):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in WEBHOOK_METHODS:
            refusal = plain_refusal(
                405, "method not allowed", {"Allow": ", ".join(WEBHOOK_METHODS)}
            )
            await refusal(scope, receive, send)
            return
        bridge: Bridge = self.state.bridge
        settings: ServiceSettings = self.state.settings
        reports: Reports = self.state.reports
        provider = parts[1]
        serve: Serve = bridge.fallback if parts[2] == "fallback" else bridge.incoming
        path_key = parts[3] if len(parts) == 4 else None
        try:
            answered = await _answer(scope, receive, bridge, settings, provider, serve, path_key)
        except WebhookError as exc:
            await _refusal(exc)(scope, receive, send)
            return
        except Exception:
            # As the framework's error middleware would: a plain 500, then the exception for
            # the server to log with its traceback.
            await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise
        try:
            await send_answer(answered.answer, send)
        finally:
            # Whether or not the provider is still there to take the answer: the call is made.
            reports.defer(answered.report)


def _is_webhook(parts: list[str]) -> bool:
    """Whether the path's parts (split at `/`) name a call webhook: `/{provider}/incoming`,
    `/{provider}/incoming/{key}` or `/{provider}/fallback`, each part not empty."""
    if len(parts) == 3:
        return bool(parts[1]) and parts[2] in ("incoming", "fallback")
    return len(parts) == 4 and bool(parts[1]) and parts[2] == "incoming" and bool(parts[3])


async def _answer(
    scope: Scope,
    receive: Receive,
    bridge: Bridge,
    settings: ServiceSettings,
    provider: str,
    serve: Serve,
    path_key: str | None,
) -> Answered:
    started = time.perf_counter()
    if path_key is not None and not bridge.adapter(provider).takes_path_key:
        raise UnknownProvider(f"{provider} webhooks take no key in their path")
    try:
        webhook = await webhook_from(
            scope, receive, Headers(scope=scope), settings.public_base_url, path_key
        )
    except WebhookError as exc:
        bridge.refused(provider, scope["method"], exc, started)
        raise
    # A WebhookError from here on has been logged and counted by the bridge.
    return await serve(provider, webhook)
