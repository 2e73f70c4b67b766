"""The floor of a Python webhook server on the benchmark's machine, for scale: what the service
would cost if it did nothing but the essentials. uvicorn (uvloop, httptools) around a bare ASGI
callable that checks the Twilio signature with the twilio SDK, POSTs the call to the stand-in
through one aiohttp session and answers TwiML built as a string. No framework, routing, logging,
metrics, de-duplication, records, limits or fallback: not a usable bridge.

Run by bench/run.py (`--peer floor`) with the same environment as the Node peer."""

import json
import os
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import quoteattr

import aiohttp
import uvicorn
from twilio.request_validator import RequestValidator

CALLS_URL = os.environ["ULTRAVOX_API_URL"] + "/calls"
HEADERS = {"X-API-Key": os.environ["ULTRAVOX_API_KEY"], "Content-Type": "application/json"}
VALIDATOR = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
BODY = json.dumps({"systemPrompt": "You are a helpful assistant.", "medium": {"twilio": {}}})

Scope = dict[str, Any]


class Floor:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["path"] in ("/healthz", "/readyz"):
            await self.answer(send, 200, b"ok", b"text/plain")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        url = f"http://{headers[b'host'].decode()}{scope['path']}"
        signature = headers.get(b"x-twilio-signature", b"").decode()
        if not VALIDATOR.validate(url, dict(parse_qsl(body.decode())), signature):
            await self.answer(send, 403, b"forbidden", b"text/plain")
            return
        assert self.session is not None
        async with self.session.post(CALLS_URL, data=BODY, headers=HEADERS) as response:
            join_url = (await response.json())["joinUrl"]
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f"<Stream url={quoteattr(join_url)} /></Connect></Response>"
        )
        await self.answer(send, 200, twiml.encode(), b"text/xml")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession()
                await send({"type": "lifespan.startup.complete"})
            else:
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def answer(send: Any, status: int, body: bytes, kind: bytes) -> None:
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        Floor(),
        host=os.environ["HOST"],
        port=int(os.environ["PORT"]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
