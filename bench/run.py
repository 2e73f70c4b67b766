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
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop  # installed with uvicorn[standard], as the service uses it too
from load import LoadResult, run_load
from processes import (
    HOST,
    Layout,
    cpu_seconds,
    cpu_wait_seconds,
    free_port,
    http_get,
    pin,
    rss_mb,
    service_command,
    started,
    wait_for_port,
    wait_ready,
)
from sampling import profile
from webhooks import (
    TWILIO_TOKEN,
    ULTRAVOX_KEY,
    answered,
    created,
    twilio_webhooks,
    ultravox_requests,
)

EVENT_NAME = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")
BENCH_DIR = Path(__file__).resolve().parent
# With each measured run capped by --max-seconds (20 s), the whole benchmark stays under two
# minutes even against a slow service.
WARM_UP_SECONDS = 5.0

Check = Callable[[int, bytes], str | None]

TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 10.0
TARGET_THROUGHPUT = 1000.0
TARGET_STARTUP_S = 1.0
TARGET_RSS_MB = 80.0


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
    warm_seconds = min(seconds, WARM_UP_SECONDS)
    load(standin, ultravox_requests(standin, warm), concurrency, created, warm_seconds, ramp)
    direct_requests = ultravox_requests(standin, args.requests)
    direct = load(standin, direct_requests, concurrency, created, seconds, ramp)
    load(port, twilio_webhooks(port, warm), concurrency, answered, warm_seconds, ramp)
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
                profile_text = None
                if args.profile:
                    webhooks = twilio_webhooks(port, args.requests)
                    ramp = delays[-1] / 1000

                    def drive() -> LoadResult:
                        return load(
                            port, webhooks, args.concurrency, answered, args.max_seconds, ramp
                        )

                    profile_text = profile(service.pid, drive, cwd, args.profile_out)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
