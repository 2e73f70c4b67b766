"""Benchmark of ultravox-bridge against the targets in docs/benchmarks.md, in one command:

    .venv/bin/python bench/run.py            # about a minute; prints a markdown report

On loopback it starts a local Ultravox stand-in (bench/standin.py) and the service as a real
process (`ultravox-bridge serve`: one uvicorn worker, signatures on), then for each stand-in
delay sends the same number of distinct requests at the same concurrency twice: straight to the
stand-in, then as Twilio webhooks (each with its own CallSid, signed with the twilio SDK's
RequestValidator) to the service, which creates one stand-in call per webhook. The service's
added latency is the difference between the two runs' percentiles. Start-up is the time from
process start to the first /readyz 200; memory is the worker's resident set from /proc.
"""

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import uvloop  # installed with uvicorn[standard], as the service uses it too
from load import LoadResult, run_load
from twilio.request_validator import RequestValidator

HOST = "127.0.0.1"
EVENT_NAME = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")
TWILIO_TOKEN = "bench-twilio-token"
ULTRAVOX_KEY = "bench-ultravox-key"
BENCH_DIR = Path(__file__).resolve().parent

Check = Callable[[int, bytes], str | None]

TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 10.0
TARGET_THROUGHPUT = 1000.0
TARGET_STARTUP_S = 1.0
TARGET_RSS_MB = 80.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Poll /readyz every 2 ms until it answers 200."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited with {process.returncode} before it was ready")
        with contextlib.suppress(OSError):
            if http_get(port, "/readyz")[0] == 200:
                return
        time.sleep(0.002)
    raise SystemExit(f"no /readyz 200 on port {port} within {timeout:g}s")


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used (user + system, all threads): unlike wall-clock rates it
    barely changes when other programs share the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int) -> float:
    """Time the process's threads were ready to run but waited for a CPU (/proc schedstat):
    what other programs on a shared machine add to the service's latency."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def pin(cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


@dataclass
class Layout:
    """Which CPUs the service and the rest (stand-in, load generator) run on."""

    service: set[int] | None
    others: set[int] | None

    @classmethod
    def choose(cls, pinning: bool) -> "Layout":
        cpus = sorted(os.sched_getaffinity(0))
        if not pinning or len(cpus) < 2:
            return cls(None, None)
        return cls({cpus[0]}, set(cpus[1:]))

    def describe(self) -> str:
        if self.service is None:
            return "not pinned"
        others = sorted(self.others or set())
        return f"service pinned to CPU {sorted(self.service)}, stand-in and load to {others}"


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str], cwd: Path, log: Path, cpus: set[int] | None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped (TERM, then KILL) however the block ends."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: pin(cpus)) if cpus else None,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_command() -> list[str]:
    script = Path(sys.executable).parent / "ultravox-bridge"
    found = str(script) if script.exists() else shutil.which("ultravox-bridge")
    if found is None:
        raise SystemExit("ultravox-bridge is not installed: run `make test` first (creates .venv)")
    return [found, "serve"]


def service_env(port: int, standin_port: int) -> dict[str, str]:
    """Only what the service needs: a developer's own settings must not leak into the run."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        ULTRAVOX_API_KEY=ULTRAVOX_KEY,
        ULTRAVOX_API_URL=f"http://{HOST}:{standin_port}/api",
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        VERIFY_SIGNATURES="true",
        HOST=HOST,
        PORT=str(port),
        LOG_LEVEL="INFO",
    )
    return env


# --- requests --------------------------------------------------------------------------------


def twilio_webhooks(port: int, count: int) -> list[bytes]:
    """Distinct inbound-call webhooks, each signed as Twilio signs it."""
    validator = RequestValidator(TWILIO_TOKEN)
    url = f"http://{HOST}:{port}/twilio/incoming"
    webhooks = []
    for _ in range(count):
        fields = {
            "AccountSid": "AC0123456789abcdef0123456789abcdef",
            "ApiVersion": "2010-04-01",
            "CallSid": "CA" + uuid.uuid4().hex,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": "+15005550006",
            "To": "+15005550001",
        }
        body = urlencode(fields).encode()
        head = (
            f"POST /twilio/incoming HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {validator.compute_signature(url, fields)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        webhooks.append(head.encode() + body)
    return webhooks


def ultravox_requests(port: int, count: int) -> list[bytes]:
    """Call creations like the ones the service sends, for timing the stand-in alone."""
    requests = []
    for _ in range(count):
        body = json.dumps(
            {
                "systemPrompt": "You are a friendly voice assistant answering a phone call.",
                "medium": {"twilio": {}},
                "firstSpeakerSettings": {"agent": {}},
                "metadata": {
                    "provider": "twilio",
                    "providerCallId": "CA" + uuid.uuid4().hex,
                    "callerNumber": "+15005550006",
                    "calledNumber": "+15005550001",
                },
            }
        ).encode()
        head = (
            f"POST /api/calls HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {ULTRAVOX_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def answered(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"status {status}"
    return None if b"<Stream" in body else "fallback instead of a stream"


def created(status: int, body: bytes) -> str | None:
    return None if status == 201 else f"status {status}"


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Pair:
    """One stand-in delay: the stand-in timed alone, then through the service."""

    delay_ms: float
    concurrency: int
    direct: LoadResult
    service: LoadResult
    calls_created: int
    ultravox_connections: int
    service_cpu_seconds: float
    service_cpu_wait_seconds: float

    @property
    def cpu_ms_per_webhook(self) -> float:
        return 1000 * self.service_cpu_seconds / max(1, self.service.completed)

    @property
    def cpu_wait_ms_per_webhook(self) -> float:
        return 1000 * self.service_cpu_wait_seconds / max(1, self.service.completed)

    def added_ms(self, fraction: float) -> float:
        return self.service.percentile_ms(fraction) - self.direct.percentile_ms(fraction)


def load(
    port: int,
    requests: list[bytes],
    concurrency: int,
    check: Check,
    seconds: float,
    ramp: float = 0.0,
) -> LoadResult:
    return uvloop.run(run_load(HOST, port, requests, concurrency, check, seconds, ramp))


def measure_pair(
    args: argparse.Namespace, delay_ms: float, pid: int, port: int, standin: int
) -> Pair:
    http_get(standin, f"/_delay/{delay_ms:g}", method="POST")
    warm = min(args.requests, 4 * args.concurrency)
    ramp, seconds, concurrency = delay_ms / 1000, args.max_seconds, args.concurrency
    load(standin, ultravox_requests(standin, warm), concurrency, created, seconds, ramp)
    direct_requests = ultravox_requests(standin, args.requests)
    direct = load(standin, direct_requests, concurrency, created, seconds, ramp)
    load(port, twilio_webhooks(port, warm), concurrency, answered, seconds, ramp)
    webhooks = twilio_webhooks(port, args.requests)
    before = json.loads(http_get(standin, "/_stats")[1])
    cpu_before, wait_before = cpu_seconds(pid), cpu_wait_seconds(pid)
    service = load(port, webhooks, concurrency, answered, seconds, ramp)
    cpu_used = cpu_seconds(pid) - cpu_before
    cpu_waited = cpu_wait_seconds(pid) - wait_before
    after = json.loads(http_get(standin, "/_stats")[1])
    return Pair(
        delay_ms,
        args.concurrency,
        direct,
        service,
        after["created"] - before["created"],
        after["connections"] - before["connections"],
        cpu_used,
        cpu_waited,
    )


def profile(pid: int, port: int, args: argparse.Namespace, out: Path, delay_ms: float) -> str:
    """Sample the service with py-spy during one more run at the last stand-in delay; the top
    functions as text."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return "py-spy is not installed (`.venv/bin/pip install py-spy`)"
    raw = out / "profile.txt"
    sampler = subprocess.Popen(
        # --gil: only the thread running Python counts, not the idle thread-pool workers.
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--gil",
            "--rate",
            "500",
            "--format",
            "raw",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    webhooks = twilio_webhooks(port, args.requests)
    load(port, webhooks, args.concurrency, answered, args.max_seconds, delay_ms / 1000)
    sampler.send_signal(signal.SIGINT)
    try:
        sampler.wait(timeout=20)
    except subprocess.TimeoutExpired:
        sampler.kill()
        sampler.wait()
    if not raw.exists():
        return "py-spy could not attach (it needs ptrace permission)"
    if args.profile_out:
        shutil.copyfile(raw, args.profile_out)
    return summarise_profile(raw.read_text())


# Stages of a webhook, each named by the function that does it (the frame's text in py-spy's
# stacks); a stage's share counts every sample with that function on the stack.
STAGES = (
    ("Whole webhook handler (app/api/webhooks.py:incoming)", "webhooks.py:incoming"),
    ("Read the request (webhook_request)", "webhooks.py:webhook_request"),
    ("Check the signature (ProviderAdapter.check)", "ProviderAdapter.check"),
    ("Create the Ultravox call (UltravoxClient._create)", "UltravoxClient._create"),
    ("... of which httpcore's pool bookkeeping", "_assign_requests_to_connections"),
    ("Build the answer XML (stream_answer)", "stream_answer"),
    ("Log lines (logging)", "logging/__init__.py:Logger."),
)


def summarise_profile(collapsed: str, top: int = 15) -> str:
    """From py-spy's collapsed stacks: each stage's share of the samples, and the functions
    with the most samples of their own."""
    own: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [name for name in map(_frame_name, stack.split(";")) if name]
        if not frames:
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for label, marker in STAGES:
            if any(marker in frame for frame in frames):
                stages[label] += count
    if not total:
        return "py-spy recorded no samples"
    lines = [f"{total} samples of the thread holding the GIL.", ""]
    lines += ["| Stage | Share of the samples |", "| --- | ---: |"]
    lines += [f"| {label} | {100 * stages[label] / total:.1f}% |" for label, _ in STAGES]
    lines += ["", "| Function (own time) | Share of the samples |", "| --- | ---: |"]
    lines += [f"| `{name}` | {100 * n / total:.1f}% |" for name, n in own.most_common(top)]
    return "\n".join(lines)


def _frame_name(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `module.py:func`, shortest path that says where."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/app/" in path:
        path = "app/" + path.split("/app/", 1)[1]
    elif "/lib/python" in path:
        path = path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return f"{path}:{name}" if path else name


def log_events(log: Path) -> str:
    """How many of each event the service logged, e.g. retries that would explain a slow tail."""
    events: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        # The service's own events are names (startup, webhook.answered); uvicorn's are prose.
        if isinstance(event, dict) and EVENT_NAME.match(str(event.get("event", ""))):
            events[event["event"]] += 1
    return ", ".join(f"{name} {count}" for name, count in events.most_common()) or "none"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def report(
    args: argparse.Namespace,
    layout: Layout,
    pairs: list[Pair],
    startups: list[float],
    memory: dict[str, tuple[float, float]],
    events: str,
    loads: tuple[str, str],
    elapsed: float,
) -> str:
    out = ["## ultravox-bridge benchmark", ""]
    out.append(f"- Machine: {machine()}")
    out.append(f"- Load average (1/5/15 min) before: {loads[0]}; after: {loads[1]}")
    out.append(
        "- Service: `ultravox-bridge serve`, one uvicorn worker, Twilio signatures verified, "
        f"INFO logs to a file; {layout.describe()}"
    )
    out.append(
        f"- Each row: {args.requests} distinct requests at {args.concurrency} concurrent "
        f"connections, after {min(args.requests, 4 * args.concurrency)} warm-up requests; "
        f"run time {elapsed:.0f} s"
    )
    out += [
        "",
        "| Stand-in delay | Stand-in alone p50 / p99 | Through the service p50 / p99 "
        "| Added p50 / p99 | Webhooks/s | CPU per webhook | Waited for a CPU per webhook "
        "| Errors | Calls created | Connections to the stand-in |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for pair in pairs:
        direct, service = pair.direct, pair.service
        errors = ", ".join(f"{n} {why}" for why, n in service.failures.items()) or "0"
        out.append(
            f"| {pair.delay_ms:g} ms "
            f"| {direct.percentile_ms(0.5):.2f} / {direct.percentile_ms(0.99):.2f} ms "
            f"| {service.percentile_ms(0.5):.2f} / {service.percentile_ms(0.99):.2f} ms "
            f"| {pair.added_ms(0.5):.2f} / {pair.added_ms(0.99):.2f} ms "
            f"| {service.throughput:.0f} | {pair.cpu_ms_per_webhook:.2f} ms "
            f"| {pair.cpu_wait_ms_per_webhook:.2f} ms | {errors} "
            f"| {pair.calls_created} / {service.completed} | {pair.ultravox_connections} |"
        )
    latency = max(pairs, key=lambda pair: pair.delay_ms)
    fastest = min(pairs, key=lambda pair: pair.delay_ms)
    rss_after, rss_peak = memory["after"]
    checks = [
        (
            f"Added latency p50, {latency.concurrency} concurrent, {latency.delay_ms:g} ms "
            "stand-in",
            f"{latency.added_ms(0.5):.2f} ms",
            f"<= {TARGET_ADDED_P50_MS:g} ms",
            latency.added_ms(0.5) <= TARGET_ADDED_P50_MS,
        ),
        (
            f"Added latency p99, {latency.concurrency} concurrent, {latency.delay_ms:g} ms "
            "stand-in",
            f"{latency.added_ms(0.99):.2f} ms",
            f"<= {TARGET_ADDED_P99_MS:g} ms",
            latency.added_ms(0.99) <= TARGET_ADDED_P99_MS,
        ),
        (
            f"Webhooks/s, one worker, {fastest.delay_ms:g} ms stand-in",
            f"{fastest.service.throughput:.0f}",
            f">= {TARGET_THROUGHPUT:g}",
            fastest.service.throughput >= TARGET_THROUGHPUT,
        ),
        (
            f"Start-up to first /readyz 200 (median of {len(startups)}; max)",
            f"{statistics.median(startups):.2f} s; {max(startups):.2f} s",
            f"<= {TARGET_STARTUP_S:g} s",
            max(startups) <= TARGET_STARTUP_S,
        ),
        (
            "RSS of the worker: ready / after the run / peak",
            f"{memory['ready'][0]:.1f} / {rss_after:.1f} / {rss_peak:.1f} MiB",
            f"<= {TARGET_RSS_MB:g} MB",
            rss_peak <= TARGET_RSS_MB,
        ),
    ]
    out += ["", f"Service log events (all start-ups and runs): {events}"]
    out += ["", "| Target | Measured | Goal | Met |", "| --- | ---: | ---: | :---: |"]
    for name, measured, goal, met in checks:
        out.append(f"| {name} | {measured} | {goal} | {'yes' if met else '**no**'} |")
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delays", default="0,200", help="stand-in delays in ms (default 0,200)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2500, help="per run (default 2500)")
    parser.add_argument(
        "--max-seconds", type=float, default=20.0, help="cap on each run (default 20)"
    )
    parser.add_argument("--startups", type=int, default=3, help="extra start-ups to time")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the service with py-spy (at the last delay)",
    )
    parser.add_argument(
        "--profile-out", type=Path, help="with --profile: keep py-spy's collapsed stacks here"
    )
    return parser.parse_args(argv)


def time_startup(command: list[str], env: dict[str, str], cwd: Path, layout: Layout) -> float:
    port = int(env["PORT"])
    began = time.perf_counter()
    with started(command, env, cwd, cwd / "service.log", layout.service) as process:
        wait_ready(port, process)
        return time.perf_counter() - began


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    delays = [float(value) for value in args.delays.split(",")]
    layout = Layout.choose(pinning=not args.no_pin)
    pin(layout.others)
    load_before = load_average()
    began = time.perf_counter()
    command = service_command()
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as scratch:
        # The service runs in an empty directory, so no `.env` of the developer's is read.
        cwd = Path(scratch)
        standin_port, port = free_port(), free_port()
        standin_cmd = [sys.executable, str(BENCH_DIR / "standin.py"), "--port", str(standin_port)]
        env = service_env(port, standin_port)
        with started(standin_cmd, dict(os.environ), cwd, cwd / "standin.log", layout.others) as s:
            wait_for_port(standin_port, s)
            startups = [time_startup(command, env, cwd, layout) for _ in range(args.startups)]
            process_began = time.perf_counter()
            with started(command, env, cwd, cwd / "service.log", layout.service) as service:
                wait_ready(port, service)
                startups.append(time.perf_counter() - process_began)
                memory = {"ready": rss_mb(service.pid)}
                pairs = [
                    measure_pair(args, delay, service.pid, port, standin_port) for delay in delays
                ]
                memory["after"] = rss_mb(service.pid)
                events = log_events(cwd / "service.log")
                profile_text = (
                    profile(service.pid, port, args, cwd, delays[-1]) if args.profile else None
                )
    text = report(
        args,
        layout,
        pairs,
        startups,
        memory,
        events,
        (load_before, load_average()),
        time.perf_counter() - began,
    )
    print(text)
    if profile_text is not None:
        print(f"\n### Where the service spends its time (py-spy, {delays[-1]:g} ms stand-in)\n")
        print(profile_text)
    failed = sum(pair.direct.errors + pair.service.errors for pair in pairs)
    if failed:
        print(f"\n{failed} request(s) did not get the expected answer", file=sys.stderr)
    return 1 if failed else 0


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the stand-in exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.01)
    raise SystemExit(f"the stand-in did not listen on port {port} within {timeout:g}s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
