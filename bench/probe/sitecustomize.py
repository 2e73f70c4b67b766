"""The webhook's path timed inside the service, for `bench/run.py --probe`.

Loaded as `sitecustomize` when this directory is on the service's PYTHONPATH, it patches
uvicorn's HTTP protocol, the application and the service's Ultravox transport to stamp each
POST webhook at these moments, and writes the stamps as JSON to $BRIDGE_PROBE_OUT when the
process exits:

- `parsed`: uvicorn's parser begins the request (`on_message_begin`);
- `app`: the application is called;
- `sent`: the Ultravox request is handed to the transport, which writes it at once;
- `answer`: the first bytes of Ultravox's answer arrive;
- `resumed`: the webhook's task has the answer;
- `written`: the answer's last body message has been written;
- `done`: the application returns (its log line, metrics and record are queued to be made
  a moment later: `app.api.webhooks.Reports`).

A measuring tool: it is never on the service's own PYTHONPATH.
"""

import atexit
import contextvars
import json
import os
import time
from typing import Any

now = time.perf_counter
stamps: list[dict[str, float]] = []
current: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "probe", default=None
)


def install() -> None:
    from uvicorn.protocols.http import httptools_impl

    import app.asyncio_transport as transport
    import app.main as main

    protocol: Any = httptools_impl.HttpToolsProtocol
    begin, headers_complete = protocol.on_message_begin, protocol.on_headers_complete

    def on_message_begin(self: Any) -> None:
        self.probe_parsed = now()
        begin(self)

    def on_headers_complete(self: Any) -> None:
        headers_complete(self)
        self.scope["probe.parsed"] = self.probe_parsed

    protocol.on_message_begin = on_message_begin
    protocol.on_headers_complete = on_headers_complete

    connection: Any = transport._Connection
    exchange, data_received = connection.exchange, connection.data_received

    async def probed_exchange(self: Any, *args: Any, **kwargs: Any) -> Any:
        stamp = current.get()
        if stamp is not None:
            stamp["sent"] = now()
            self.probe_stamp = stamp
        try:
            return await exchange(self, *args, **kwargs)
        finally:
            if stamp is not None:
                stamp["resumed"] = now()
                self.probe_stamp = None

    def probed_data_received(self: Any, data: bytes) -> None:
        stamp = getattr(self, "probe_stamp", None)
        if stamp is not None and "answer" not in stamp:
            stamp["answer"] = now()
        data_received(self, data)

    connection.exchange = probed_exchange
    connection.data_received = probed_data_received

    application: Any = main.BridgeApp
    call = application.__call__

    async def probed_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await call(self, scope, receive, send)
            return
        stamp = {"parsed": scope.get("probe.parsed", 0.0), "app": now()}
        current.set(stamp)

        async def probed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                stamp["written"] = now()

        try:
            await call(self, scope, receive, probed_send)
        finally:
            stamp["done"] = now()
            stamps.append(stamp)

    application.__call__ = probed_call


def write() -> None:
    with open(os.environ["BRIDGE_PROBE_OUT"], "w") as out:
        json.dump(stamps, out)


if os.environ.get("BRIDGE_PROBE_OUT"):
    install()
    atexit.register(write)
