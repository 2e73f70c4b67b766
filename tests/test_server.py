"""The real server process: on SIGTERM it reports not ready, finishes the webhook in flight and
exits. Runs `ultravox-bridge serve` on a free loopback port against a slow Ultravox stand-in."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    API_KEY,
    BASE_URL,
    JOIN_URL,
    TWILIO_TOKEN,
    twilio_fields,
    twilio_webhook,
)
from tests.redis_server import free_port

ULTRAVOX_DELAY_SECONDS = 2.5
DRAIN_SECONDS = 1.0


class SlowUltravox(ThreadingHTTPServer):
    """Answers POST /api/calls with a created call after `ULTRAVOX_DELAY_SECONDS`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.received = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowUltravox

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.set()
        time.sleep(ULTRAVOX_DELAY_SECONDS)
        body = json.dumps({"callId": "slow-call-1", "joinUrl": JOIN_URL}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slow_ultravox() -> Iterator[SlowUltravox]:
    server = SlowUltravox()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def bridge_process(
    slow_ultravox: SlowUltravox, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ULTRAVOX_API_KEY": API_KEY,
        "ULTRAVOX_API_URL": slow_ultravox.url,
        "ULTRAVOX_DEADLINE_SECONDS": "6",
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "PUBLIC_BASE_URL": BASE_URL,
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }
    log = (tmp_path / "bridge.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,  # no .env there
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, tmp_path / "bridge.log")
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError(f"the server exited at start-up:\n{log.read_text()}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the server did not become ready:\n{log.read_text()}")


def test_webhook_in_flight_during_sigterm_gets_its_answer(
    bridge_process: tuple[subprocess.Popen[bytes], str], slow_ultravox: SlowUltravox
) -> None:
    process, url = bridge_process
    webhook = twilio_webhook(twilio_fields())
    headers = {**webhook.headers, "content-type": "application/x-www-form-urlencoded"}

    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(
            httpx.post,
            url + "/twilio/incoming",
            content=webhook.content,
            headers=headers,
            timeout=20,
        )
        assert slow_ultravox.received.wait(timeout=10)
        process.send_signal(signal.SIGTERM)

        readiness = []
        for _ in range(int(DRAIN_SECONDS / 0.05)):
            readiness.append(httpx.get(url + "/readyz", timeout=2))
            if readiness[-1].status_code == 503:
                break
            time.sleep(0.05)
        answer = in_flight.result(timeout=20)

    assert readiness[-1].status_code == 503
    assert readiness[-1].json()["draining"] is True
    assert answer.status_code == 200
    assert JOIN_URL.replace("&", "&amp;") in answer.text
    assert process.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("live_relays", "grace_seconds", "exits"),
    [(1, 60.0, False), (0, 60.0, True), (1, 0.0, True)],
    ids=["waits-for-live-relay", "no-relay-no-wait", "grace-spent"],
)
async def test_after_the_drain_shutdown_waits_for_relayed_calls_within_the_grace(
    live_relays: int, grace_seconds: float, exits: bool
) -> None:
    import uvicorn
    from fastapi import FastAPI

    from app.server import DrainingServer

    drained: list[bool] = []
    server = DrainingServer(
        uvicorn.Config(FastAPI()),
        drain_seconds=0,
        on_drain=lambda: drained.append(True),
        live_relays=lambda: live_relays,
        relay_grace_seconds=grace_seconds,
    )
    server.handle_exit(signal.SIGTERM, None)
    await server.on_tick(1)
    assert drained == [True]
    assert server.should_exit is exits
