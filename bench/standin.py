"""A local Ultravox stand-in for the benchmark: answers `POST .../calls` with a created call
after a set delay, as cheaply as possible so that it never limits what is measured.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, no pipelining) for httpx and
the benchmark's load generator. `POST /_delay/<ms>` changes the delay between runs and
`GET /_stats` answers how many calls were created over how many connections.

Usage: python bench/standin.py --port 8765 [--delay-ms 200]
"""

import argparse
import asyncio
import json
from typing import cast

import uvloop  # installed with uvicorn[standard], as the service uses it too


class StandIn:
    """Shared state: the response delay and the number of calls created."""

    def __init__(self, delay_ms: float) -> None:
        self.delay = delay_ms / 1000
        self.created = 0
        self.connections = 0

    def respond(self, method: bytes, path: bytes) -> tuple[int, bytes]:
        if method == b"POST" and path.endswith(b"/calls"):
            self.created += 1
            number = self.created
            body = {
                "callId": f"00000000-0000-4000-8000-{number:012d}",
                "joinUrl": f"wss://voice.ultravox.invalid/calls/{number}/join?token=bench",
                "created": "2026-11-25T00:00:00Z",
            }
            return 201, json.dumps(body).encode()
        if method == b"POST" and path.startswith(b"/_delay/"):
            self.delay = float(path.rsplit(b"/", 1)[1]) / 1000
            return 200, b'{"ok": true}'
        if method == b"GET" and path == b"/_stats":
            return 200, json.dumps(
                {"created": self.created, "connections": self.connections}
            ).encode()
        return 404, b'{"detail": "not found"}'


REASONS = {200: b"OK", 201: b"Created", 404: b"Not Found"}


class Connection(asyncio.Protocol):
    def __init__(self, state: StandIn) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.state.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            status, body = self.state.respond(method, path)
            response = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n" % (
                status,
                REASONS[status],
            ) + b"content-length: %d\r\n\r\n%s" % (len(body), body)
            if self.state.delay > 0 and path.endswith(b"/calls"):
                asyncio.get_running_loop().call_later(self.state.delay, self._send, response)
            else:
                self._send(response)

    def _send(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


async def serve(host: str, port: int, delay_ms: float) -> None:
    state = StandIn(delay_ms)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.delay_ms))


if __name__ == "__main__":
    main()
