"""`ultravox-bridge serve --workers 2` as a real process tree on loopback: /metrics sums both
workers, a webhook repeated to the other worker starts no second Ultravox call (Redis), and
SIGTERM drains every worker before the service exits.

Which worker takes a connection is the kernel's choice; to make it the test's, the other
worker is paused (SIGSTOP) while a request is sent, so the running one accepts it."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.cli import main
from tests.conftest import API_KEY, BASE_URL, TWILIO_TOKEN, twilio_fields, twilio_webhook
from tests.loopback_ultravox import LoopbackUltravox, loopback_ultravox
from tests.redis_server import free_port

DRAIN_SECONDS = 1.5


@pytest.fixture
def ultravox() -> Iterator[LoopbackUltravox]:
    with loopback_ultravox() as server:
        yield server


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    workers: list[int]
    log: Path
    tmp: Path

    @contextmanager
    def only(self, worker: int) -> Iterator[None]:
        """Every other worker paused: new connections reach `worker`."""
        others = [pid for pid in self.workers if pid != worker]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)

    def webhook(self, call_id: str) -> httpx.Response:
        webhook = twilio_webhook(twilio_fields(call_id))
        headers = {**webhook.headers, "content-type": "application/x-www-form-urlencoded"}
        return httpx.post(
            self.url + "/twilio/incoming", content=webhook.content, headers=headers, timeout=10
        )


@pytest.fixture
def service(ultravox: LoopbackUltravox, redis_url: str, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": str(tmp_path),  # where serve keeps the workers' metrics
        "ULTRAVOX_API_KEY": API_KEY,
        "ULTRAVOX_API_URL": ultravox.url,
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "PUBLIC_BASE_URL": BASE_URL,
        "REDIS_URL": redis_url,
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "WEB_CONCURRENCY": "2",
    }
    log_path = tmp_path / "bridge.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        workers = _wait_for_workers(process, log_path, 2)
        yield Service(process, f"http://127.0.0.1:{port}", workers, log_path, tmp_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for pid in _startup_pids(log_path):
            _kill_if_alive(pid)
        log.close()


def _startup_pids(log: Path) -> list[int]:
    """The pids of the workers that logged their start-up (`startup` event)."""
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [int(event["pid"]) for event in events if event.get("event") == "startup"]


def _wait_for_workers(process: subprocess.Popen[bytes], log: Path, count: int) -> list[int]:
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"serve exited at start-up:\n{log.read_text()}")
        pids = _startup_pids(log)
        if len(pids) == count:
            time.sleep(0.3)  # from the start-up log line to accepting: the socket is shared
            return pids
        time.sleep(0.05)
    raise AssertionError(f"the workers did not start:\n{log.read_text()}")


def _kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _sample(metrics: str, name: str, labels: str = "") -> float:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", metrics, re.MULTILINE)
    assert found is not None, f"{name}{labels} not in /metrics"
    return float(found.group(1))


def test_metrics_sum_every_workers_counts(service: Service) -> None:
    first, second = service.workers
    with service.only(first):
        for n in range(3):
            assert service.webhook(f"CA{n:032x}").status_code == 200
    with service.only(second):
        for n in range(3, 8):
            assert service.webhook(f"CA{n:032x}").status_code == 200

    answered = '{outcome="answered",provider="twilio"}'

    def counts(metrics: str) -> tuple[float, ...]:
        return (
            _sample(metrics, "bridge_webhooks_total", answered),
            _sample(metrics, "bridge_webhook_duration_seconds_count", '{provider="twilio"}'),
            _sample(metrics, "bridge_ultravox_responses_total", '{status="201"}'),
            _sample(metrics, "bridge_webhooks_in_flight"),
        )

    for worker in (first, second):  # each worker's /metrics counts all eight
        # A worker updates its series just after its answer has gone: on a loaded machine
        # the last update may still be on its way when the other worker is asked.
        deadline = time.monotonic() + 5
        while True:
            with service.only(worker):
                seen = counts(httpx.get(service.url + "/metrics", timeout=10).text)
            if seen == (8, 8, 8, 0) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert seen == (8, 8, 8, 0)


def test_a_webhook_repeated_to_the_other_worker_starts_no_second_call(
    service: Service, ultravox: LoopbackUltravox
) -> None:
    first, second = service.workers
    call_id = "CA" + "7" * 32
    with service.only(first):
        answer = service.webhook(call_id)
    with service.only(second):
        repeat = service.webhook(call_id)

    assert ultravox.created == 1
    assert ultravox.join_url(1).replace("&", "&amp;") in answer.text
    assert repeat.text == answer.text


def test_sigterm_drains_every_worker_then_serve_exits(service: Service) -> None:
    service.process.send_signal(signal.SIGTERM)
    time.sleep(DRAIN_SECONDS / 3)
    for worker in service.workers:  # both still serve, and both say they are draining
        with service.only(worker):
            readiness = httpx.get(service.url + "/readyz", timeout=5)
            webhook = service.webhook(f"CA{worker:032x}")
        assert readiness.status_code == 503
        assert readiness.json()["draining"] is True
        assert webhook.status_code == 200
        assert "<Stream" in webhook.text

    assert service.process.wait(timeout=30) == 0
    for worker in service.workers:
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)
    # The workers' metrics directory is gone with them.
    assert not list(service.tmp.glob("ultravox-bridge-metrics-*"))


def test_several_workers_without_redis_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("ULTRAVOX_API_KEY", "k")
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["serve", "--workers", "2", "--port", "8123"]) == 2
    error = capsys.readouterr().err
    assert "WEB_CONCURRENCY (2, or serve --workers) needs REDIS_URL" in error
    assert "set REDIS_URL (redis://host:6379/0) or run one worker" in error

    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert main(["serve", "--port", "8123"]) == 2
    assert "WEB_CONCURRENCY (3, or serve --workers) needs REDIS_URL" in capsys.readouterr().err
