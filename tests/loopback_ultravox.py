"""Ultravox's REST API on loopback, served from a thread, for tests that run the service as a
real process (`ultravox-bridge serve`), where respx cannot reach: every `POST /api/calls` is
answered with a new created call after `delay` seconds."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackUltravox(ThreadingHTTPServer):
    """`created` counts the calls created; `received` is set by the first request."""

    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.created = 0
        self.received = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    @staticmethod
    def join_url(number: int) -> str:
        """The joinUrl of the `number`th call created (from 1)."""
        return f"wss://voice.ultravox.test/join/{number}?token=t{number}&v=1"

    def next_call(self) -> int:
        with self._lock:
            self.created += 1
            return self.created


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackUltravox

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.set()
        time.sleep(self.server.delay)
        number = self.server.next_call()
        body = json.dumps({"callId": f"call-{number}", "joinUrl": self.server.join_url(number)})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def loopback_ultravox(delay: float = 0.0) -> Iterator[LoopbackUltravox]:
    """The stand-in, serving until the block ends."""
    server = LoopbackUltravox(delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
