"""Gives every HTTP request an id: the caller's `X-Request-ID` when it is a sane token, a new
one otherwise. The id is set for the request's log lines and returned in `X-Request-ID`."""

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import request_id

HEADER = "X-Request-ID"
_NAME = HEADER.lower().encode()
# Ids from outside go into logs and headers, so only short plain tokens are taken as given.
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Pure ASGI middleware (no per-request task, unlike `BaseHTTPMiddleware`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, _NAME)
        # A new id: 128 random bits in 32 hex digits, as uuid4().hex without the UUID object.
        current = given if given is not None and _ACCEPTED.match(given) else os.urandom(16).hex()
        value = current.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Replacing any the application set (a header name is compared lower-case).
                headers = [item for item in message.get("headers", ()) if item[0].lower() != _NAME]
                headers.append((_NAME, value))
                message["headers"] = headers
            await send(message)

        token = request_id.set(current)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
