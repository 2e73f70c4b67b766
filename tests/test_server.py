"""The real server process: on SIGTERM it reports not ready, finishes the webhook in flight and
exits. Runs `ultravox-bridge serve` on a free loopback port against a slow Ultravox stand-in."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    API_KEY,
    BASE_URL,
    TWILIO_TOKEN,
    twilio_fields,
    twilio_webhook,
)
from tests.loopback_ultravox import LoopbackUltravox, loopback_ultravox
from tests.redis_server import free_port

ULTRAVOX_DELAY_SECONDS = 2.5
DRAIN_SECONDS = 1.0


@pytest.fixture
def slow_ultravox() -> Iterator[LoopbackUltravox]:
    with loopback_ultravox(delay=ULTRAVOX_DELAY_SECONDS) as server:
        yield server


@pytest.fixture
def bridge_process(
    slow_ultravox: LoopbackUltravox, tmp_path: Path
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
    bridge_process: tuple[subprocess.Popen[bytes], str], slow_ultravox: LoopbackUltravox
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
    assert slow_ultravox.join_url(1).replace("&", "&amp;") in answer.text
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
