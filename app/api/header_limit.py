"""Refuses requests whose headers are larger than any provider sends, before any route (or an
SDK that logs a header it does not understand) sees them. The HTTP parser uvicorn picks
(httptools when installed) has no limit of its own."""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import plain_refusal

# Providers' webhooks carry a few kB of headers (a Vonage JWT is the largest); h11, uvicorn's
# other parser, allows 16 KiB for the whole head.
MAX_HEADER_BYTES = 16 * 1024


class HeaderSizeLimit:
    """Pure ASGI middleware: 431 for an HTTP request, a refused handshake for a WebSocket."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                await _refuse(scope, receive, send, self.max_bytes)
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": "headers too large"})
        return
    await plain_refusal(431, f"request headers over {limit} bytes")(scope, receive, send)
