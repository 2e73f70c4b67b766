"""Relay load test: N simulated Vonage calls through the real service, both ways, on loopback.

Three processes, so the service's own CPU can be measured apart from its stand-ins:
  - the service (uvicorn app.main:app, Vonage enabled, signatures off);
  - a fake Ultravox: the REST call creation and the joinUrl sockets; each call's agent speaks
    continuously, sending one second of audio at a time, ahead of real time as Ultravox does;
  - this driver: N fake Vonage sockets, each sending a 640-byte frame every 20 ms and timing
    every frame it receives; all in the same instant (`--caller-phases lockstep`, the default
    and the worst case) or each call at its own phase (`independent`).

Reports, for each N: the service's CPU (percent of one core, total and per call), its memory
growth per call, and the timing error of the frames the caller side receives: each frame's
deviation from a 20 ms grid fitted to the call (p50, p99, max). The error is measured where the
fake Vonage receives it, so it includes the driver's own scheduling: an upper bound.

Usage: .venv/bin/python bench/relay_bench.py --calls 50 100 200 --duration 30
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from processes import machine_ticks, steal_share
from prometheus_client.parser import text_string_to_metric_families

FRAME = 640  # 20 ms at 16 kHz, s16le
FRAME_SECONDS = 0.02
AGENT_SECOND = bytes(FRAME * 50)
CHUNK = FRAME * 12 + 160
METRICS_PORT_OFFSET = 3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


# --- fake Ultravox (runs in its own process) --------------------------------------------------


async def fake_ultravox(rest_port: int, socket_port: int) -> None:
    calls = 0

    async def rest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                calls += 1
                body = json.dumps(
                    {
                        "callId": f"bench-{calls}",
                        "joinUrl": f"ws://127.0.0.1:{socket_port}/calls/{calls}",
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def join(socket: websockets.ServerConnection) -> None:
        async def speak() -> None:
            # The agent talks without pause: two seconds at once, then one more second every
            # second, in chunks of 0.25 s (not a whole number of frames), so the relay always
            # holds 1-2 s of audio, as with Ultravox's large client buffer.
            started = time.monotonic()
            n = -1
            while True:
                for offset in range(0, len(AGENT_SECOND), CHUNK):
                    await socket.send(AGENT_SECOND[offset : offset + CHUNK])
                n += 1
                await asyncio.sleep(max(0.0, started + n - time.monotonic()))

        speaker = asyncio.create_task(speak())
        try:
            async for _ in socket:
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            speaker.cancel()

    rest_server = await asyncio.start_server(rest, "127.0.0.1", rest_port)
    async with rest_server, websockets.serve(join, "127.0.0.1", socket_port, compression=None):
        await asyncio.Event().wait()


# --- the driver -------------------------------------------------------------------------------


@dataclass
class CallStats:
    arrivals: list[float] = field(default_factory=list)


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def grid_errors_ms(arrivals: list[float]) -> list[float]:
    """Each frame's distance from a 20 ms grid fitted to the call (median offset)."""
    offsets = [at - n * FRAME_SECONDS for n, at in enumerate(arrivals)]
    anchor = statistics.median(offsets)
    return [abs(offset - anchor) * 1000 for offset in offsets]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class FakeVonage(asyncio.Protocol):
    """One call's Vonage socket, as a bare asyncio protocol speaking just enough WebSocket: the
    `websockets` client costs tens of microseconds a message, which at 200 calls would make the
    driver, not the service, the bottleneck."""

    def __init__(self, path: str, host: str) -> None:
        self.path, self.host = path, host
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.arrivals: list[float] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(  # type: ignore[attr-defined]
            f"GET /{self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded.done():
            head, sep, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(head.split(b"\r\n")[0].decode()))
                return
            self.buffer = bytearray(rest)
            self.upgraded.set_result(None)
        while len(self.buffer) >= 2:
            opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, start = int.from_bytes(self.buffer[2:4], "big"), 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, start = int.from_bytes(self.buffer[2:10], "big"), 10
            if len(self.buffer) < start + length:
                return
            payload = bytes(self.buffer[start : start + length])
            del self.buffer[: start + length]
            if opcode == 0x2:
                assert length == FRAME, f"frame of {length} bytes"
                self.arrivals.append(now)
            elif opcode == 0x9:  # ping: answer, or the service drops the socket
                self.write(0xA, payload)
            elif opcode == 0x8:
                self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def write(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked; an all-zero mask leaves the payload as it is.
        assert self.transport is not None and len(payload) < 65536
        size = bytes([0x80 | len(payload)]) if len(payload) < 126 else (
            bytes([0xFE]) + len(payload).to_bytes(2, "big")
        )  # fmt: skip
        self.transport.write(bytes([0x80 | opcode]) + size + b"\x00\x00\x00\x00" + payload)


CALLER_FRAME = bytes([0x82, 0xFE]) + FRAME.to_bytes(2, "big") + bytes(4) + bytes(FRAME)


async def one_call(n: int, app_port: int, http: httpx.AsyncClient) -> FakeVonage:
    answer = await http.get(
        f"http://127.0.0.1:{app_port}/vonage/incoming",
        params={"uuid": f"call-{n}", "from": "15005550006", "to": "15005550001"},
    )
    # The NCCO names the public host; the service is here.
    path = answer.json()[0]["endpoint"][0]["uri"].split("://", 1)[1].split("/", 1)[1]
    host = f"127.0.0.1:{app_port}"
    loop = asyncio.get_running_loop()
    _, call = await loop.create_connection(lambda: FakeVonage(path, host), "127.0.0.1", app_port)
    await asyncio.wait_for(call.upgraded, 10)
    call.write(0x1, json.dumps({"event": "websocket:connected"}).encode())
    return call


async def caller_audio(calls: list[FakeVonage], stop: asyncio.Event, phases: str) -> None:
    """Every caller speaks a frame every 20 ms. `lockstep`: every call's frame in the same
    instant, from one timer (as one media server pacing all a worker's calls from one clock
    would send them: the worst case for the relay). `independent`: each call at its own phase
    in the 20 ms, drawn at random (seeded) in 1 ms steps, as calls whose audio is paced from
    their own start are."""
    slots = 1 if phases == "lockstep" else 20
    step = FRAME_SECONDS / slots
    rng = random.Random(20261202)
    by_slot: list[list[FakeVonage]] = [[] for _ in range(slots)]
    placed = 0
    started = time.monotonic()
    k = 0
    while not stop.is_set():
        while placed < len(calls):  # calls set up since the last tick
            by_slot[rng.randrange(slots)].append(calls[placed])
            placed += 1
        for call in by_slot[k % slots]:
            if not call.closed and call.transport is not None:
                call.transport.write(CALLER_FRAME)
        k += 1
        await asyncio.sleep(max(0.0, started + k * step - time.monotonic()))


async def run_level(
    calls: int, duration: float, warmup: float, app_port: int, app_pid: int, phases: str
) -> dict[str, Any]:
    stop = asyncio.Event()
    rss_before = proc_rss_bytes(app_pid)
    live: list[FakeVonage] = []
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        speaker = asyncio.create_task(caller_audio(live, stop, phases))
        results: list[FakeVonage | BaseException] = []
        for n in range(calls):
            try:
                live.append(await one_call(n, app_port, http))
                results.append(live[-1])
            except (OSError, RuntimeError, TimeoutError, httpx.HTTPError) as exc:
                results.append(exc)
            await asyncio.sleep(0.01)  # calls arrive over time, not all in one instant
        await asyncio.sleep(warmup)
        metrics_start = scrape(app_port)
        cpu_start, wall_start = proc_cpu_seconds(app_pid), time.monotonic()
        ticks = machine_ticks()
        await asyncio.sleep(duration)
        cpu_used, wall = proc_cpu_seconds(app_pid) - cpu_start, time.monotonic() - wall_start
        stolen = steal_share(ticks, machine_ticks())
        metrics_end = scrape(app_port)
        rss_during = proc_rss_bytes(app_pid)
        stop.set()
        await speaker
        for call in live:
            if call.transport is not None:
                call.transport.close()
    stats = [CallStats(call.arrivals) for call in live]
    failures = sum(isinstance(r, BaseException) for r in results)
    failures += sum(len(call.arrivals) == 0 for call in live)
    window_start = wall_start
    errors: list[float] = []
    frames = 0
    for call_stats in stats:
        measured = [at for at in call_stats.arrivals if window_start <= at <= window_start + wall]
        frames += len(measured)
        if len(measured) > 10:
            errors.extend(grid_errors_ms(measured))
    cpu_percent = cpu_used / wall * 100
    sent = "bridge_relay_frames_total[to_platform]"
    underruns = "bridge_relay_underruns_total"
    return {
        "service_frames_per_call_per_s": (metrics_end[sent] - metrics_start[sent]) / calls / wall,
        "caller_frames_per_call_per_s": (
            metrics_end["bridge_relay_frames_total[to_ultravox]"]
            - metrics_start.get("bridge_relay_frames_total[to_ultravox]", 0.0)
        )
        / calls
        / wall,
        "underruns": metrics_end.get(underruns, 0.0) - metrics_start.get(underruns, 0.0),
        "lateness_p50_ms": lateness_quantile(metrics_start, metrics_end, 0.50),
        "lateness_p99_ms": lateness_quantile(metrics_start, metrics_end, 0.99),
        "calls": calls,
        "failed": failures,
        "cpu_percent": cpu_percent,
        "cpu_percent_per_call": cpu_percent / calls,
        "rss_mib_per_call": (rss_during - rss_before) / calls / 2**20,
        "frames_per_call_per_s": frames / calls / wall,
        "p50_ms": percentile(errors, 0.50) if errors else float("nan"),
        "p99_ms": percentile(errors, 0.99) if errors else float("nan"),
        "max_ms": max(errors) if errors else float("nan"),
        "steal_percent": 100 * stolen,
    }


def scrape(app_port: int) -> dict[str, float]:
    """The service's relay metrics, as `name{le}` -> value (vonage only)."""
    url = f"http://127.0.0.1:{app_port + METRICS_PORT_OFFSET}/metrics"
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url).text):
        for sample in family.samples:
            if sample.labels.get("provider") != "vonage":
                continue
            key = sample.name + "".join(
                f"[{sample.labels[label]}]"
                for label in ("le", "direction")
                if label in sample.labels
            )
            samples[key] = sample.value
    return samples


def lateness_quantile(before: dict[str, float], after: dict[str, float], share: float) -> float:
    """A quantile of frame lateness (ms) over the window, interpolated within its bucket."""
    name = "bridge_relay_frame_lateness_seconds_bucket"
    bounds = sorted(float(key[len(name) + 1 : -1]) for key in after if key.startswith(name + "["))
    counts = [after[f"{name}[{_le(b)}]"] - before.get(f"{name}[{_le(b)}]", 0.0) for b in bounds]
    total = counts[-1]
    if not total:
        return float("nan")
    target, previous_bound, previous_count = share * total, 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= target:
            if bound == float("inf"):
                return previous_bound * 1000
            within = (target - previous_count) / max(count - previous_count, 1e-9)
            return (previous_bound + within * (bound - previous_bound)) * 1000
        previous_bound, previous_count = bound, count
    return float("nan")


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def start_service(app_port: int, rest_port: int, ws: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ULTRAVOX_API_KEY": "bench-key",
        "ULTRAVOX_API_URL": f"http://127.0.0.1:{rest_port}/api",
        "VERIFY_SIGNATURES": "false",
        "PUBLIC_BASE_URL": "https://bridge.bench",
        "LOG_LEVEL": "WARNING",
    }
    service = os.path.join(os.path.dirname(os.path.abspath(__file__)), "relay_service.py")
    return subprocess.Popen(
        [sys.executable, service, str(app_port), str(app_port + METRICS_PORT_OFFSET), ws], env=env
    )


async def wait_ready(port: int) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the service did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--app-port", type=int, default=18700)
    parser.add_argument(
        "--service-cpu",
        type=int,
        help="pin the service to this CPU and the driver and fake Ultravox to the others, so "
        "the stand-ins cannot take the service's CPU time",
    )
    parser.add_argument(
        "--ws",
        default="service",
        choices=["service", "auto", "websockets", "websockets-sansio", "wsproto"],
        help="the WebSocket protocol in the service: its own (app/ws_protocol.py, as `serve` runs "
        "it) or one of uvicorn's",
    )
    parser.add_argument(
        "--caller-phases",
        default="lockstep",
        choices=["lockstep", "independent"],
        help="the callers' frames all in one instant every 20 ms (the worst case), or each call "
        "at its own phase",
    )
    parser.add_argument("--fake-ultravox", nargs=2, type=int, metavar=("REST", "SOCKETS"))
    args = parser.parse_args()
    if args.fake_ultravox:
        await fake_ultravox(*args.fake_ultravox)
        return
    rest_port, socket_port = args.app_port + 1, args.app_port + 2
    if args.service_cpu is not None:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {args.service_cpu})
    fake = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, __file__, "--fake-ultravox", str(rest_port), str(socket_port)]
    )
    results = []
    try:
        for calls in args.calls:
            # A fresh service per level, so memory and CPU belong to this level only.
            service = start_service(args.app_port, rest_port, args.ws)
            if args.service_cpu is not None:
                os.sched_setaffinity(service.pid, {args.service_cpu})
            try:
                await wait_ready(args.app_port)
                results.append(
                    await run_level(
                        calls,
                        args.duration,
                        args.warmup,
                        args.app_port,
                        service.pid,
                        args.caller_phases,
                    )
                )
                print(json.dumps(results[-1]), flush=True)
            finally:
                service.send_signal(signal.SIGTERM)
                service.wait(timeout=30)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    print()
    print("| calls | failed | service CPU (% of one core) | CPU per call | memory per call |"
          " frames/s per call sent | lateness at send p50 | p99 | frames/s per call received |"
          " error at receiver p50 | p99 | max | steal |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['calls']} | {r['failed']} | {r['cpu_percent']:.1f}% | "
            f"{r['cpu_percent_per_call']:.2f}% | {r['rss_mib_per_call'] * 1024:.0f} KiB | "
            f"{r['service_frames_per_call_per_s']:.1f} | {r['lateness_p50_ms']:.2f} ms | "
            f"{r['lateness_p99_ms']:.2f} ms | {r['frames_per_call_per_s']:.1f} | "
            f"{r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['max_ms']:.1f} ms | "
            f"{r['steal_percent']:.1f}% |"
        )


if __name__ == "__main__":
    try:
        import uvloop  # installed with uvicorn[standard], which the service itself runs on
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
