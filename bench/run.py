"""Benchmark of ultravox-bridge against the targets in docs/benchmarks.md, in one command:

    .venv/bin/python bench/run.py            # about two minutes; prints a markdown report

On loopback it starts a local Ultravox stand-in (bench/standin.py) and the service as a real
process (`ultravox-bridge serve`: one uvicorn worker unless --workers, signatures on), then for
each stand-in delay sends the same number of distinct requests at the same concurrency twice:
straight to the stand-in, then as Twilio webhooks (each with its own CallSid, signed with the
twilio SDK's RequestValidator) to the service, which creates one stand-in call per webhook. The
service's added latency is the difference between the two runs' percentiles. Each row is
measured in rounds (--rounds), the servers taking turns first, and the rounds pooled. Start-up
is the time from process start to the first /readyz 200; memory and CPU are the service's
process and its workers' from /proc.

Beside the service, in the same run and on the same CPU, it measures the peer (bench/peers/: a
server of the shape of Ultravox's Node quickstart, see bench/peer.py) with the same webhooks and
prints the ratios between the two: the comparison a user choosing between them would make.
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
from dataclasses import dataclass, field
from pathlib import Path

import uvloop  # installed with uvicorn[standard], as the service uses it too
from load import LoadResult, run_load
from peer import peer_command, peer_env
from processes import (
    HOST,
    Layout,
    cpu_seconds,
    cpu_wait_seconds,
    free_port,
    http_get,
    machine_ticks,
    pin,
    rss_mb,
    service_command,
    started,
    steal_share,
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
# With each measured run capped by --max-seconds (20 s), the whole benchmark (two rounds) stays
# under about four minutes even against a slow service.
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


def pool_loads(results: list[LoadResult]) -> LoadResult:
    """Loads of the same kind taken as one: their latencies, failures and time together."""
    return LoadResult(
        [latency for result in results for latency in result.latencies],
        dict(sum((Counter(result.failures) for result in results), Counter())),
        sum(result.elapsed for result in results),
    )


@dataclass
class Run:
    """One load against one server (the service or the peer): its answers and their cost."""

    result: LoadResult
    calls_created: int
    ultravox_connections: int
    cpu_seconds: float
    cpu_wait_seconds: float
    steal: float = 0.0

    @classmethod
    def pooled(cls, runs: list["Run"]) -> "Run":
        """The rounds of one server at one load, taken as one run: their requests together."""
        result = pool_loads([run.result for run in runs])
        steal = sum(run.steal * run.result.elapsed for run in runs) / max(result.elapsed, 1e-9)
        return cls(
            result,
            sum(run.calls_created for run in runs),
            sum(run.ultravox_connections for run in runs),
            sum(run.cpu_seconds for run in runs),
            sum(run.cpu_wait_seconds for run in runs),
            steal,
        )

    @property
    def cpu_ms_per_webhook(self) -> float:
        return 1000 * self.cpu_seconds / max(1, self.result.completed)

    @property
    def cpu_wait_ms_per_webhook(self) -> float:
        return 1000 * self.cpu_wait_seconds / max(1, self.result.completed)


@dataclass
class Server:
    """A server under test, listening on `port`, its process `pid`."""

    name: str
    port: int
    pid: int


@dataclass
class Pair:
    """One stand-in delay and concurrency: the stand-in timed alone, then through the service
    (and the peer, when it runs), in rounds; `runs` and `direct` pool the rounds, `rounds`
    keeps each round's added p50 per server."""

    delay_ms: float
    concurrency: int
    direct: LoadResult
    runs: dict[str, Run]
    rounds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def service(self) -> LoadResult:
        return self.runs["service"].result

    def added_ms(self, fraction: float, name: str = "service") -> float:
        through = self.runs[name].result.percentile_ms(fraction)
        return through - self.direct.percentile_ms(fraction)


def load(
    port: int,
    requests: list[bytes],
    concurrency: int,
    check: Check,
    seconds: float,
    ramp: float = 0.0,
) -> LoadResult:
    return uvloop.run(run_load(HOST, port, requests, concurrency, check, seconds, ramp))


def measure_run(
    server: Server, standin: int, count: int, concurrency: int, seconds: float, ramp: float
) -> Run:
    warm = min(count, 4 * concurrency)
    load(
        server.port,
        twilio_webhooks(server.port, warm),
        concurrency,
        answered,
        WARM_UP_SECONDS,
        ramp,
    )
    webhooks = twilio_webhooks(server.port, count)
    before = json.loads(http_get(standin, "/_stats")[1])
    cpu_before, wait_before = cpu_seconds(server.pid), cpu_wait_seconds(server.pid)
    ticks = machine_ticks()
    result = load(server.port, webhooks, concurrency, answered, seconds, ramp)
    stolen = steal_share(ticks, machine_ticks())
    cpu_used = cpu_seconds(server.pid) - cpu_before
    cpu_waited = cpu_wait_seconds(server.pid) - wait_before
    after = json.loads(http_get(standin, "/_stats")[1])
    return Run(
        result,
        after["created"] - before["created"],
        after["connections"] - before["connections"],
        cpu_used,
        cpu_waited,
        stolen,
    )


def measure_pair(
    delay_ms: float,
    concurrency: int,
    count: int,
    seconds: float,
    servers: list[Server],
    standin: int,
    rounds: int = 1,
) -> Pair:
    """`count` requests to the stand-in alone and to each server, `rounds` times over: the
    servers take turns first (A B, B A, ...) and each round times the stand-in alone again, so
    that the machine's drift over the run (the same code's added p50 went from 1.4 to 2.2 ms
    within an hour, and from 1.2 to 2.1 ms between two rounds) falls on every server alike.
    Each round is as long as a whole run: in a shorter one the connections' requests have less
    time to bunch up behind each other, and every server's added latency comes out lower (a
    half, for 625 requests instead of 2,500)."""
    http_get(standin, f"/_delay/{delay_ms:g}", method="POST")
    ramp = delay_ms / 1000
    warm = min(count, 4 * concurrency)
    directs: list[LoadResult] = []
    runs: dict[str, list[Run]] = {server.name: [] for server in servers}
    for turn in range(rounds):
        load(standin, ultravox_requests(standin, warm), concurrency, created, WARM_UP_SECONDS, ramp)
        requests = ultravox_requests(standin, count)
        directs.append(load(standin, requests, concurrency, created, seconds, ramp))
        for server in servers if turn % 2 == 0 else servers[::-1]:
            runs[server.name].append(
                measure_run(server, standin, count, concurrency, seconds, ramp)
            )
    direct = pool_loads(directs)
    added = {
        name: [
            run.result.percentile_ms(0.5) - one.percentile_ms(0.5)
            for run, one in zip(server_runs, directs, strict=True)
        ]
        for name, server_runs in runs.items()
    }
    pooled = {name: Run.pooled(server_runs) for name, server_runs in runs.items()}
    return Pair(delay_ms, concurrency, direct, pooled, added)


PROBE_SEGMENTS = (
    ("Request parsed -> the application called", "parsed", "app"),
    ("Application -> the Ultravox request written", "app", "sent"),
    ("Answer's first bytes -> the webhook's task has the answer", "answer", "resumed"),
    ("Task has the answer -> the TwiML written", "resumed", "written"),
    ("**Before the Ultravox request** (parsed -> written)", "parsed", "sent"),
    ("**After its answer** (first bytes -> TwiML written)", "answer", "written"),
    ("After the TwiML until the application returns (its report queued)", "written", "done"),
)


PROBE_STAMPS = {name for _, start, end in PROBE_SEGMENTS for name in (start, end)}


def probe_report(stamps: list[dict[str, float]], delay_ms: float) -> str:
    """Medians and 90th percentiles of the probe's segments, over the webhooks of the largest
    delay (those whose Ultravox request took at least half of it)."""
    chosen = [
        stamp
        for stamp in stamps
        if stamp.keys() >= PROBE_STAMPS
        and stamp["parsed"] > 0
        and stamp["answer"] - stamp["sent"] >= delay_ms / 2000
    ]
    if not chosen:
        return "No webhook of that delay was stamped."
    rows = [
        f"{len(chosen)} webhooks.",
        "",
        "| Segment | p50 | p90 |",
        "| --- | ---: | ---: |",
    ]
    for label, start, end in PROBE_SEGMENTS:
        spans = LoadResult([stamp[end] - stamp[start] for stamp in chosen])
        rows.append(
            f"| {label} | {spans.percentile_ms(0.5):.3f} ms | {spans.percentile_ms(0.9):.3f} ms |"
        )
    return "\n".join(rows)


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


@dataclass
class Results:
    """Everything one benchmark run measured."""

    pairs: list[Pair]
    one_connection: Pair
    startups: list[float]
    memory: dict[str, tuple[float, float]]
    events: str
    loads: tuple[str, str]
    peer: str
    elapsed: float


def pair_rows(pairs: list[Pair]) -> list[str]:
    rows = [
        "| Server | Stand-in delay | Concurrency | Stand-in alone p50 / p99 "
        "| Through the server p50 / p99 | Added p50 / p99 | Webhooks/s | CPU per webhook "
        "| Waited for a CPU per webhook | Steal | Errors | Calls created "
        "| Connections to the stand-in |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for pair in pairs:
        direct = pair.direct
        for name, run in pair.runs.items():
            through = run.result
            errors = ", ".join(f"{n} {why}" for why, n in through.failures.items()) or "0"
            rows.append(
                f"| {name} | {pair.delay_ms:g} ms | {pair.concurrency} "
                f"| {direct.percentile_ms(0.5):.2f} / {direct.percentile_ms(0.99):.2f} ms "
                f"| {through.percentile_ms(0.5):.2f} / {through.percentile_ms(0.99):.2f} ms "
                f"| {pair.added_ms(0.5, name):.2f} / {pair.added_ms(0.99, name):.2f} ms "
                f"| {through.throughput:.0f} | {run.cpu_ms_per_webhook:.2f} ms "
                f"| {run.cpu_wait_ms_per_webhook:.2f} ms | {100 * run.steal:.1f}% | {errors} "
                f"| {run.calls_created} / {through.completed} | {run.ultravox_connections} |"
            )
    return rows


def side_by_side(results: Results) -> list[str]:
    """The service against the peer, as ratios from this one run (issue 15's targets)."""
    latency = max(results.pairs, key=lambda pair: pair.delay_ms)
    fastest = min(results.pairs, key=lambda pair: pair.delay_ms)
    one = results.one_connection
    out = [
        "| Load | Service | Peer | Service / peer | Target | Met |",
        "| --- | ---: | ---: | ---: | --- | :---: |",
    ]

    def row(name: str, service: float, peer: float, unit: str, target: str, met: bool) -> None:
        ratio = service / peer if peer else float("inf")
        out.append(
            f"| {name} | {service:.2f}{unit} | {peer:.2f}{unit} | {ratio:.2f} | {target} "
            f"| {'yes' if met else '**no**'} |"
        )

    if latency.delay_ms > 0:
        where = f"{latency.concurrency} connections, stand-in {latency.delay_ms:g} ms"
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):
            service, peer = latency.added_ms(fraction), latency.added_ms(fraction, "peer")
            row(f"{where}: added {label}", service, peer, " ms", "<= peer's", service <= peer)
    service = fastest.runs["service"].result.throughput
    peer = fastest.runs["peer"].result.throughput
    row(
        f"Saturation: webhooks/s, {fastest.concurrency} connections, "
        f"stand-in {fastest.delay_ms:g} ms",
        service,
        peer,
        "",
        ">= 0.5 x peer's (goal 1.0)",
        service >= 0.5 * peer,
    )
    service = one.runs["service"].result.percentile_ms(0.5)
    peer = one.runs["peer"].result.percentile_ms(0.5)
    row(
        "One connection, stand-in 0 ms: p50",
        service,
        peer,
        " ms",
        "<= peer's + 1 ms",
        service <= peer + 1.0,
    )
    return out


def report(args: argparse.Namespace, layout: Layout, results: Results) -> str:
    pairs, startups, memory = results.pairs, results.startups, results.memory
    out = ["## ultravox-bridge benchmark", ""]
    out.append(f"- Machine: {machine()}")
    out.append(f"- Load average (1/5/15 min) before: {results.loads[0]}; after: {results.loads[1]}")
    out.append(
        f"- Service: `ultravox-bridge serve`, {args.workers} uvicorn worker(s), store "
        f"{'Redis' if args.redis else 'in memory'}, Twilio signatures verified, "
        f"{args.log_level} logs to a file; `app` from {args.source or 'this tree'}; "
        f"{layout.describe()}"
    )
    out.append(f"- Peer: {results.peer}")
    out.append(
        f"- Each row: {args.rounds} round(s) of {args.requests} distinct requests, each after "
        f"{min(args.requests, 4 * args.concurrency)} warm-up requests, the servers taking "
        f"turns first; run time {results.elapsed:.0f} s"
    )
    out += ["", *pair_rows([*pairs, results.one_connection])]
    if "peer" in results.one_connection.runs:
        out += ["", f"### Side by side with the peer ({args.peer})", ""]
        out += side_by_side(results)
    if args.versus is not None or args.versus_command is not None:
        out += ["", f"### The service against `versus` ({versus_label(args)})", ""]
        for pair in pairs:
            service, versus = pair.added_ms(0.5), pair.added_ms(0.5, "versus")
            ratio = f"{service / versus:.2f}" if versus > 0 else "no ratio"
            out.append(
                f"- {pair.concurrency} connections, stand-in {pair.delay_ms:g} ms: added p50 "
                f"{service:.2f} / {versus:.2f} ms ({ratio}), p99 "
                f"{pair.added_ms(0.99):.2f} / {pair.added_ms(0.99, 'versus'):.2f} ms"
            )
    if args.rounds > 1:
        out += ["", "Added p50 round by round (each round against its own stand-in timing):", ""]
        for pair in pairs:
            for name, added in pair.rounds.items():
                values = " / ".join(f"{value:.2f}" for value in added)
                out.append(
                    f"- {name}, {pair.concurrency} connections, stand-in {pair.delay_ms:g} ms: "
                    f"{values} ms"
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
    out += ["", f"Service log events (all start-ups and runs): {results.events}"]
    out += ["", "### The service's own targets", ""]
    out += ["| Target | Measured | Goal | Met |", "| --- | ---: | ---: | :---: |"]
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
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="measure each row this many times, the servers taking turns first; the report "
        "pools the rounds (default 2)",
    )
    parser.add_argument("--startups", type=int, default=3, help="extra start-ups to time")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="service worker processes (WEB_CONCURRENCY; over 1 implies --redis and --no-pin)",
    )
    parser.add_argument(
        "--redis", action="store_true", help="de-duplicate through a local redis-server"
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="run the service's `app` from this directory, e.g. an older commit's "
        "(`git archive COMMIT app | tar -x -C DIR`), for before/after comparisons",
    )
    parser.add_argument(
        "--versus",
        type=Path,
        help="also run the service with `app` from this directory (server `versus`), in the "
        "same rounds: an A/B of two versions that the machine's drift does not decide",
    )
    parser.add_argument(
        "--versus-command",
        type=Path,
        help="run `versus` with this `ultravox-bridge` executable, e.g. another virtualenv's "
        "on another Python (with or without --versus)",
    )
    parser.add_argument("--no-peer", action="store_true", help="do not run a peer (bench/peers/)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("INFO", "WARNING"),
        help="the service's LOG_LEVEL: WARNING leaves out the line per answered webhook, to "
        "see what it costs (default INFO, as deployed)",
    )
    parser.add_argument(
        "--peer",
        choices=("quickstart", "floor"),
        default="quickstart",
        help="the Node quickstart's shape (default), or the floor of a Python server",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the service with py-spy (at the last delay)",
    )
    parser.add_argument(
        "--profile-out", type=Path, help="with --profile: keep py-spy's collapsed stacks here"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="also time each webhook's path inside the service (bench/probe/), reported for "
        "the largest delay; the probe's own cost is in every service row of that run",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.workers > 1:  # the workers need the shared store, and more than one CPU
        args.redis, args.no_pin = True, True
    return args


def versus_label(args: argparse.Namespace) -> str:
    parts = []
    if args.versus is not None:
        parts.append(f"`app` from {args.versus}")
    if args.versus_command is not None:
        parts.append(f"run by {args.versus_command}")
    return ", ".join(parts)


def time_startup(command: list[str], env: dict[str, str], cwd: Path, layout: Layout) -> float:
    port = int(env["PORT"])
    began = time.perf_counter()
    with started(command, env, cwd, cwd / "service.log", layout.service) as process:
        wait_ready(port, process)
        return time.perf_counter() - began


def measure(
    args: argparse.Namespace, servers: list[Server], standin: int
) -> tuple[list[Pair], Pair]:
    """Every delay at the set concurrency, then one connection at a 0 ms stand-in."""
    delays = [float(value) for value in args.delays.split(",")]
    count, seconds = args.requests, args.max_seconds
    pairs = [
        measure_pair(delay, args.concurrency, count, seconds, servers, standin, args.rounds)
        for delay in delays
    ]
    one = measure_pair(0, 1, min(count, 1000), seconds, servers, standin, args.rounds)
    return pairs, one


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    layout = Layout.choose(pinning=not args.no_pin)
    pin(layout.others)
    load_before = load_average()
    began = time.perf_counter()
    command = service_command()
    probe_out = None
    if args.probe:
        handle, name = tempfile.mkstemp(prefix="bridge-probe-", suffix=".json")
        os.close(handle)
        probe_out = Path(name)
    peer_cmd, peer_note = (None, "not run (--no-peer)") if args.no_peer else peer_command(args.peer)
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bridge-b-") as tmp:
        # The service runs in an empty directory, so no `.env` of the developer's is read.
        cwd = Path(tmp)
        standin_port, port, peer_port = free_port(), free_port(), free_port()
        standin_cmd = [sys.executable, str(BENCH_DIR / "standin.py"), "--port", str(standin_port)]
        env = service_env(port, standin_port)
        if args.source is not None:  # ahead of the installed (editable) `app`
            env["PYTHONPATH"] = str(args.source.resolve())
        if args.workers > 1:
            env["WEB_CONCURRENCY"] = str(args.workers)
        env["LOG_LEVEL"] = args.log_level
        if args.redis:
            redis_port = free_port()
            redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", ""]
            redis = stack.enter_context(
                started(redis_cmd, dict(os.environ), cwd, cwd / "redis.log", layout.others)
            )
            wait_for_port(redis_port, redis)
            env["REDIS_URL"] = f"redis://{HOST}:{redis_port}/0"
        standin = stack.enter_context(
            started(standin_cmd, dict(os.environ), cwd, cwd / "standin.log", layout.others)
        )
        wait_for_port(standin_port, standin)
        startups = [time_startup(command, env, cwd, layout) for _ in range(args.startups)]
        process_began = time.perf_counter()
        measured_env = dict(env)
        if probe_out is not None:  # for the measured service only, not the timed start-ups
            paths = [str(BENCH_DIR / "probe"), env.get("PYTHONPATH", "")]
            measured_env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
            measured_env["BRIDGE_PROBE_OUT"] = str(probe_out)
        service = stack.enter_context(
            started(command, measured_env, cwd, cwd / "service.log", layout.service)
        )
        wait_ready(port, service)
        startups.append(time.perf_counter() - process_began)
        memory = {"ready": rss_mb(service.pid)}
        servers = [Server("service", port, service.pid)]
        if peer_cmd is not None:
            # On the service's CPU: both get the same single core, measured one at a time.
            peer_log, penv = cwd / "peer.log", peer_env(peer_port, standin_port)
            peer = stack.enter_context(started(peer_cmd, penv, cwd, peer_log, layout.service))
            wait_ready(peer_port, peer)
            servers.append(Server("peer", peer_port, peer.pid))
        if args.versus is not None or args.versus_command is not None:
            # Its own directory, so that its records database is not the service's.
            versus_dir, versus_port = cwd / "versus", free_port()
            versus_dir.mkdir()
            venv = {**env, "PORT": str(versus_port)}
            if args.versus is not None:
                venv["PYTHONPATH"] = str(args.versus.resolve())
            versus_cmd = command
            if args.versus_command is not None:
                versus_cmd = [str(args.versus_command.resolve()), "serve"]
            versus = stack.enter_context(
                started(versus_cmd, venv, versus_dir, cwd / "versus.log", layout.service)
            )
            wait_ready(versus_port, versus)
            servers.append(Server("versus", versus_port, versus.pid))
        pairs, one_connection = measure(args, servers, standin_port)
        memory["after"] = rss_mb(service.pid)
        events = log_events(cwd / "service.log")
        profile_text = None
        if args.profile:
            webhooks = twilio_webhooks(port, args.requests)
            ramp = pairs[-1].delay_ms / 1000
            http_get(standin_port, f"/_delay/{pairs[-1].delay_ms:g}", method="POST")

            def drive() -> LoadResult:
                return load(port, webhooks, args.concurrency, answered, args.max_seconds, ramp)

            profile_text = profile(service.pid, drive, cwd, args.profile_out)
    results = Results(
        pairs,
        one_connection,
        startups,
        memory,
        events,
        (load_before, load_average()),
        peer_note,
        time.perf_counter() - began,
    )
    print(report(args, layout, results))
    if probe_out is not None:  # written by the service as it exited, with the block above
        largest = max(pair.delay_ms for pair in pairs)
        print(f"\n### Inside the service, stand-in {largest:g} ms (--probe)\n")
        print(probe_report(json.loads(probe_out.read_text() or "[]"), largest))
        probe_out.unlink()
    if profile_text is not None:
        print(f"\n### Where the service spends its time (py-spy, {pairs[-1].delay_ms:g} ms)\n")
        print(profile_text)
    failed = sum(
        pair.direct.errors + sum(run.result.errors for run in pair.runs.values())
        for pair in [*pairs, one_connection]
    )
    if failed:
        print(f"\n{failed} request(s) did not get the expected answer", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
