"""The hostile-input attack of issue 10, against a real `ultravox-bridge serve`:

    .venv/bin/python bench/attack.py                     # about 40 s; prints a markdown report
    .venv/bin/python bench/attack.py --source DIR        # the service's code from another checkout

On loopback it starts the Ultravox stand-in (bench/standin.py) and the service (one uvicorn
worker, Twilio and Plivo signatures on). It first times `/healthz` and genuine signed Twilio
webhooks on a quiet service, then again while attackers on `--connections` keep-alive
connections send, back to back, unsigned 64 KiB forms built to make signature checks expensive:
~14,000 distinct field names to `/twilio/incoming` (quadratic in the twilio SDK over a
multi-dict that scans its fields) and 32,000 repeats of one name to `/plivo/incoming`
(quadratic in how Plivo's signed parameters were built). The targets: a genuine webhook answered
in under 1 s and `/healthz` under 100 ms during the attack.

Every probe opens a new connection, as a provider does. `--source` prepends a directory to the
service's PYTHONPATH, so that a checkout of an older commit can be measured with this script.
"""

import argparse
import multiprocessing
import os
import queue
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from processes import HOST, free_port, http_get, service_command, started, wait_for_port, wait_ready
from run import load_average, machine, service_env
from webhooks import twilio_webhooks

BENCH_DIR = Path(__file__).resolve().parent
MAX_BODY_BYTES = 64 * 1024
PLIVO_TOKEN = "bench-plivo-token"
TARGET_WEBHOOK_S = 1.0
TARGET_HEALTHZ_MS = 100.0


def twilio_attack(port: int) -> bytes:
    """Distinct field names (hex counters) filling 64 KiB, with a signature that cannot match."""
    names = "&".join(f"{n:x}" for n in range(20_000)).encode()[:MAX_BODY_BYTES]
    body = names[: names.rfind(b"&")]
    head = (
        f"POST /twilio/incoming HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "X-Twilio-Signature: bm90LWEtc2lnbmF0dXJlLWF0LWFsbA==\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def plivo_attack(port: int) -> bytes:
    """One field name repeated to fill 64 KiB, with a signature that cannot match."""
    body = b"&".join([b"a"] * (MAX_BODY_BYTES // 2))
    head = (
        f"POST /plivo/incoming HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "X-Plivo-Signature-V3: bm90LWEtc2lnbmF0dXJl\r\n"
        "X-Plivo-Signature-V3-Nonce: 12345678901234567890\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_answer(sock: socket.socket) -> int:
    """Read one HTTP/1.1 answer with a Content-Length body; its status."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer's body")
        body += chunk
    return int(lines[0].split(b" ", 2)[1])


def exchange(port: int, raw: bytes, timeout: float) -> tuple[int, float]:
    """Send one request on a new connection; its status and the seconds until the answer."""
    started_at = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(raw)
        status = read_answer(sock)
    return status, time.perf_counter() - started_at


def attack(
    port: int, raw: bytes, until: float, answers: "multiprocessing.Queue[tuple[str, float | None]]"
) -> None:
    """One attacker (a process of its own, so that it cannot slow the probes down): `raw` on
    one connection, back to back until the time `until`, each answer's status and time put on
    `answers`."""
    while time.time() < until:
        try:
            with socket.create_connection((HOST, port), timeout=120) as sock:
                while time.time() < until:
                    started_at = time.perf_counter()
                    sock.sendall(raw)
                    status = read_answer(sock)
                    answers.put((str(status), time.perf_counter() - started_at))
        except OSError as exc:  # the service closed the connection: open another
            answers.put((f"connection: {type(exc).__name__}", None))


@dataclass
class Attackers:
    """Processes that each keep one connection busy with attack requests, back to back."""

    port: int
    requests: list[bytes]
    answers: Counter[str] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    _queue: "multiprocessing.Queue[tuple[str, float | None]]" = field(
        default_factory=multiprocessing.Queue
    )
    _processes: list[multiprocessing.Process] = field(default_factory=list)

    def start(self, seconds: float) -> None:
        until = time.time() + seconds
        for raw in self.requests:
            process = multiprocessing.Process(
                target=attack, args=(self.port, raw, until, self._queue), daemon=True
            )
            process.start()
            self._processes.append(process)

    def stop(self) -> None:
        """Count the attackers' answers while they stop (one still waiting for a slow answer
        after a few seconds is killed). The queue is read meanwhile: a process exits only once
        what it put on the queue is in the pipe."""
        give_up_at = time.monotonic() + 5
        while any(p.is_alive() for p in self._processes) and time.monotonic() < give_up_at:
            self._take(0.1)
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()
        while self._take(0.5):
            pass

    def _take(self, timeout: float) -> bool:
        try:
            answer, seconds = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        self.answers[answer] += 1
        if seconds is not None:
            self.seconds.append(seconds)
        return True


@dataclass
class Probes:
    healthz: list[float] = field(default_factory=list)
    webhooks: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


def timed(
    port: int, raw: bytes, timeout: float, name: str, times: list[float], failures: Counter[str]
) -> None:
    """One probe: its time goes to `times` (a probe without an answer counts as `timeout`)."""
    try:
        status, took = exchange(port, raw, timeout)
    except TimeoutError:
        times.append(timeout)
        failures[f"{name} no answer in {timeout:g} s"] += 1
        return
    except OSError as exc:
        failures[f"{name} {type(exc).__name__}"] += 1
        return
    times.append(took)
    if status != 200:
        failures[f"{name} {status}"] += 1


def probe(port: int, seconds: float, timeout: float) -> Probes:
    """Every 100 ms a `/healthz`, every 500 ms a genuine signed webhook, for `seconds`."""
    result = Probes()
    healthz = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    webhooks = iter(twilio_webhooks(port, int(seconds * 2) + 10))
    stop_at = time.perf_counter() + seconds
    tick = 0
    while time.perf_counter() < stop_at:
        next_tick = time.perf_counter() + 0.1
        timed(port, healthz, timeout, "/healthz", result.healthz, result.failures)
        if tick % 5 == 0:
            timed(port, next(webhooks), timeout, "webhook", result.webhooks, result.failures)
        tick += 1
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def row(name: str, probes: Probes, attackers: Attackers | None) -> str:
    healthz_ms = [s * 1000 for s in probes.healthz]
    hooks = probes.webhooks
    attack = "none"
    if attackers is not None:
        answers = ", ".join(f"{n} x {a}" for a, n in attackers.answers.most_common())
        attack = f"{answers or 'no answer'}; p50 {percentile(attackers.seconds, 0.5) * 1000:.1f} ms"
    failures = ", ".join(f"{n} x {f}" for f, n in probes.failures.items()) or "0"
    return (
        f"| {name} | {percentile(healthz_ms, 0.5):.1f} / {percentile(healthz_ms, 0.99):.1f} / "
        f"{max(healthz_ms, default=float('nan')):.1f} ms ({len(healthz_ms)}) "
        f"| {percentile(hooks, 0.5):.3f} / {max(hooks, default=float('nan')):.3f} s ({len(hooks)}) "
        f"| {failures} | {attack} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="attack duration")
    parser.add_argument("--connections", type=int, default=4, help="attacking connections")
    parser.add_argument("--delay-ms", type=float, default=200.0, help="stand-in's call delay")
    parser.add_argument("--probe-timeout", type=float, default=30.0, help="seconds per probe")
    parser.add_argument("--source", type=Path, help="run the service's code from this checkout")
    args = parser.parse_args()

    port, standin = free_port(), free_port()
    env = service_env(port, standin)
    env["PLIVO_AUTH_TOKEN"] = PLIVO_TOKEN
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    loads = [load_average()]
    with tempfile.TemporaryDirectory() as workdir:
        log = Path(workdir) / "service.log"
        standin_command = [sys.executable, str(BENCH_DIR / "standin.py"), "--port", str(standin)]
        standin_env = {"PATH": os.environ.get("PATH", "")}
        with (
            started(standin_command, standin_env, Path(workdir), log, None) as standin_process,
            started(service_command(), env, Path(workdir), log, None) as service,
        ):
            wait_for_port(standin, standin_process)
            wait_ready(port, service)
            http_get(standin, f"/_delay/{args.delay_ms:g}", method="POST")
            quiet = probe(port, 5.0, args.probe_timeout)
            requests = [
                (twilio_attack if n % 2 == 0 else plivo_attack)(port)
                for n in range(args.connections)
            ]
            attackers = Attackers(port, requests)
            attackers.start(1.0 + args.seconds)
            time.sleep(1.0)  # every attacker has a request in the service
            attacked = probe(port, args.seconds, args.probe_timeout)
            attackers.stop()
    loads.append(load_average())

    print("## Hostile-input attack (bench/attack.py)\n")
    print(f"- Machine: {machine()}")
    print(f"- Load average (1/5/15 min) before: {loads[0]}; after: {loads[1]}")
    print(
        f"- Service: `ultravox-bridge serve`{' from ' + str(args.source) if args.source else ''},"
        f" one worker; stand-in delay {args.delay_ms:g} ms; attack {args.seconds:g} s on "
        f"{args.connections} connections (Twilio and Plivo bodies alternating)\n"
    )
    print(
        "| Phase | /healthz p50 / p99 / max (count) | Genuine webhook p50 / max (count) "
        "| Probe failures | Attack requests answered |"
    )
    print("| --- | ---: | ---: | --- | --- |")
    print(row("quiet", quiet, None))
    print(row("under attack", attacked, attackers))
    healthz_ok = max(attacked.healthz, default=float("inf")) * 1000 < TARGET_HEALTHZ_MS
    webhook_ok = max(attacked.webhooks, default=float("inf")) < TARGET_WEBHOOK_S
    print(
        f"\nTargets under attack: /healthz max < {TARGET_HEALTHZ_MS:g} ms: "
        f"{'met' if healthz_ok else 'MISSED'}; genuine webhook max < {TARGET_WEBHOOK_S:g} s: "
        f"{'met' if webhook_ok else 'MISSED'}"
    )
    attacked_at_all = sum(attackers.answers.values()) > 0 or bool(attacked.failures)
    sys.exit(0 if healthz_ok and webhook_ok and attacked_at_all and not attacked.failures else 1)


if __name__ == "__main__":
    main()
