"""Relay load test: N simulated Vonage calls through the real service, both ways, on loopback.

Three processes, so the service's own CPU can be measured apart from its stand-ins:
  - the service (uvicorn app.main:app, Vonage enabled, signatures off);
  - a fake Ultravox: the REST call creation and the joinUrl sockets; each call's agent speaks
    continuously, sending one second of audio at a time, ahead of real time as Ultravox does;
  - this driver: N fake Vonage sockets, each sending a 640-byte frame every 20 ms and timing
    every frame it receives.

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
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import websockets

FRAME = 640  # 20 ms at 16 kHz, s16le
FRAME_SECONDS = 0.02
AGENT_SECOND = bytes(FRAME * 50)
CHUNK = FRAME * 12 + 160
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


async def one_call(
    n: int, app_port: int, http: httpx.AsyncClient, stop: asyncio.Event, stats: CallStats,
    sockets: list[websockets.ClientConnection],
) -> None:  # fmt: skip
    answer = await http.get(
        f"http://127.0.0.1:{app_port}/vonage/incoming",
        params={"uuid": f"call-{n}", "from": "15005550006", "to": "15005550001"},
    )
    path = answer.json()[0]["endpoint"][0]["uri"].split("://", 1)[1].split("/", 1)[1]
    async with websockets.connect(
        f"ws://127.0.0.1:{app_port}/{path}", compression=None
    ) as socket:  # the NCCO names the public host; the service is here
        await socket.send(json.dumps({"event": "websocket:connected"}))
        sockets.append(socket)
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(socket.recv(), 1.0)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                assert len(message) == FRAME, f"frame of {len(message)} bytes"
                stats.arrivals.append(time.monotonic())


async def caller_audio(sockets: list[websockets.ClientConnection], stop: asyncio.Event) -> None:
    """Every call's caller speaks a frame every 20 ms; one timer for all calls keeps the
    driver's own load low, so it disturbs the measurement less."""
    frame = bytes(FRAME)
    started = time.monotonic()
    k = 0
    while not stop.is_set():
        for socket in list(sockets):
            try:
                await socket.send(frame)
            except websockets.ConnectionClosed:
                sockets.remove(socket)
        k += 1
        await asyncio.sleep(max(0.0, started + k * FRAME_SECONDS - time.monotonic()))


async def run_level(calls: int, duration: float, warmup: float, app_port: int, app_pid: int):
    stop = asyncio.Event()
    stats = [CallStats() for _ in range(calls)]
    rss_before = proc_rss_bytes(app_pid)
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        sockets: list[websockets.ClientConnection] = []
        speaker = asyncio.create_task(caller_audio(sockets, stop))
        tasks = []
        for n in range(calls):
            call = one_call(n, app_port, http, stop, stats[n], sockets)
            tasks.append(asyncio.create_task(call))
            await asyncio.sleep(0.01)  # calls arrive over time, not all in one instant
        await asyncio.sleep(warmup)
        cpu_start, wall_start = proc_cpu_seconds(app_pid), time.monotonic()
        await asyncio.sleep(duration)
        cpu_used, wall = proc_cpu_seconds(app_pid) - cpu_start, time.monotonic() - wall_start
        rss_during = proc_rss_bytes(app_pid)
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await speaker
    failures = [r for r in results if isinstance(r, BaseException)]
    window_start = wall_start
    errors: list[float] = []
    frames = 0
    for call in stats:
        measured = [at for at in call.arrivals if window_start <= at <= window_start + wall]
        frames += len(measured)
        if len(measured) > 10:
            errors.extend(grid_errors_ms(measured))
    cpu_percent = cpu_used / wall * 100
    return {
        "calls": calls,
        "failed": len(failures),
        "cpu_percent": cpu_percent,
        "cpu_percent_per_call": cpu_percent / calls,
        "rss_mib_per_call": (rss_during - rss_before) / calls / 2**20,
        "frames_per_call_per_s": frames / calls / wall,
        "p50_ms": percentile(errors, 0.50) if errors else float("nan"),
        "p99_ms": percentile(errors, 0.99) if errors else float("nan"),
        "max_ms": max(errors) if errors else float("nan"),
    }


def start_service(app_port: int, rest_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ULTRAVOX_API_KEY": "bench-key",
        "ULTRAVOX_API_URL": f"http://127.0.0.1:{rest_port}/api",
        "VERIFY_SIGNATURES": "false",
        "PUBLIC_BASE_URL": "https://bridge.bench",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(app_port), "--log-level", "warning", "--no-access-log"],
        env=env,
    )  # fmt: skip


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
    parser.add_argument("--fake-ultravox", nargs=2, type=int, metavar=("REST", "SOCKETS"))
    args = parser.parse_args()
    if args.fake_ultravox:
        await fake_ultravox(*args.fake_ultravox)
        return
    rest_port, socket_port = args.app_port + 1, args.app_port + 2
    fake = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, __file__, "--fake-ultravox", str(rest_port), str(socket_port)]
    )
    results = []
    try:
        for calls in args.calls:
            # A fresh service per level, so memory and CPU belong to this level only.
            service = start_service(args.app_port, rest_port)
            try:
                await wait_ready(args.app_port)
                results.append(
                    await run_level(calls, args.duration, args.warmup, args.app_port, service.pid)
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
          " frames/s per call | timing error p50 | p99 | max |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['calls']} | {r['failed']} | {r['cpu_percent']:.1f}% | "
            f"{r['cpu_percent_per_call']:.2f}% | {r['rss_mib_per_call'] * 1024:.0f} KiB | "
            f"{r['frames_per_call_per_s']:.1f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
            f"{r['max_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    try:
        import uvloop  # installed with uvicorn[standard], which the service itself runs on
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
