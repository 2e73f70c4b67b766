"""Python calls and garbage-collected objects per relayed audio frame, each way: a measure of the
relay's per-frame work that, unlike frame timings on a shared machine, barely moves from run to
run.

The service runs in this process (uvicorn and the app, as bench/relay_service.py runs them);
bench/relay_bench.py's fake Ultravox (each agent talking without pause, 1-2 s ahead of real time)
and its fake Vonage callers (a 640-byte frame every 20 ms each) run in two other processes, so
everything counted here is the service's. Once the calls are up and warm, for a window, under
`sys.setprofile`:

  - calls: every Python call and every call into C, grouped by the package it belongs to and by
    direction, from where the event loop entered Python: `to_ultravox` (uvicorn reading a caller
    frame, the relay's caller task sending it on) per caller frame, `to_platform` (aiohttp
    reading agent audio, the agent task queueing it, the pacer's timer and task sending it) per
    agent frame, `other` per frame either way;
  - objects: the allocations that bring the next young collection closer, from the
    collector's young-generation count read between profile events: objects it tracks
    (containers, coroutines, futures, bound methods...; not bytes, str or numbers) that were not
    served from a free list, less those freed within the same stretch between two events; the
    frame objects the profiler itself makes are left out. And, the collector being off for the
    window, what a full collection at its end finds unreachable (cycles only it frees).

Usage (from bench/): python relay_call_count.py [--calls 5] [--window 4] [--functions 30]
"""

import argparse
import asyncio
import collections
import dis
import functools
import gc
import inspect
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from call_count import where
from processes import HOST, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PROVIDER = "vonage"
# Where the event loop enters the service's Python code, by direction (`co_qualname`).
DIRECTIONS = {
    "WebSocketsSansIOProtocol.data_received": "to_ultravox",
    "Relay._caller_to_agent": "to_ultravox",
    "ResponseHandler.data_received": "to_platform",
    "Relay._agent_to_queue": "to_platform",
    "PacedSender._grid_point": "to_platform",  # the pacer's timer, which sends the frame
    "PacedSender.run": "to_platform",  # the pacer's task: what the timer could not send
}
GENERATORS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
YIELD_VALUE = dis.opmap["YIELD_VALUE"]


@functools.cache
def first_resume(code: types.CodeType) -> int:
    """Where a generator's frame stands when it first runs (later it resumes past a yield)."""
    return next(i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")


class Calls:
    """A `sys.setprofile` function counting calls and allocations by direction and package."""

    def __init__(self, base: types.FrameType, callers_of: str | None) -> None:
        self.base = base  # the frame under which the event loop runs callbacks and tasks
        self.direction = "other"
        self.packages: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.functions: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.python: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.objects: collections.Counter[str] = collections.Counter()
        self.allocators: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.roots: collections.Counter[str] = collections.Counter()
        self.callers_of = callers_of
        self.callers: collections.Counter[str] = collections.Counter()
        self._where: dict[types.CodeType, str] = {}
        self._freed = 0  # frames the profiler made, freed since the last event
        # The young count just after the previous event (read before get_count's tuple is freed).
        self._young = gc.get_count()[0]

    def _group(self, code: types.CodeType) -> str:
        group = self._where.get(code)
        if group is None:
            group = self._where[code] = where(code)
        return group

    def _allocator(self, frame: types.FrameType, event: str, arg: Any) -> str:
        """Where the code that ran since the previous event was: before a call, in its caller
        (for a callback or a task, in the event loop); after a call into C, in that function."""
        if event in ("c_return", "c_exception"):
            return f"{where(None, arg)}:{getattr(arg, '__qualname__', '?')}"
        if event == "call":
            if frame.f_back is None or frame.f_back is self.base:
                return "the event loop"
            frame = frame.f_back
        return f"{self._group(frame.f_code)}:{frame.f_code.co_qualname}"

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        allocated = gc.get_count()[0] - self._young + self._freed
        self._freed = 0
        code = frame.f_code
        if event == "call":
            if not code.co_flags & GENERATORS or frame.f_lasti == first_resume(code):
                allocated -= 1  # the frame object made to hand to this profile function
        elif event == "return" and (
            not code.co_flags & GENERATORS or code.co_code[frame.f_lasti] != YIELD_VALUE
        ):
            self._freed = 1  # ... freed once the call is over (a generator's, not at a yield)
        if allocated > 0:
            self.objects[self.direction] += allocated
            self.allocators[self.direction][self._allocator(frame, event, arg)] += allocated
        if event == "call":
            if frame.f_back is self.base:  # the loop entered Python: a callback or a task
                self.direction = DIRECTIONS.get(code.co_qualname, "other")
                self.roots[f"{self.direction}: {code.co_qualname}"] += 1
            group = self._group(code)
            function = f"{group}:{code.co_qualname}"
            self.python[self.direction][group] += 1
        elif event == "c_call":  # counted to the package that calls it
            group = self._group(code)
            function = f"{where(None, arg)}:{getattr(arg, '__qualname__', '?')}"
        else:
            self._young = gc.get_count()[0]
            return
        self.packages[self.direction][group] += 1
        self.functions[self.direction][function] += 1
        if self.callers_of is not None and group == self.callers_of:
            caller = frame.f_back if event == "call" else frame
            while caller is not None and self._group(caller.f_code) == group:
                caller = caller.f_back
            if caller is not None:
                self.callers[f"{self._group(caller.f_code)}:{caller.f_code.co_qualname}"] += 1
        self._young = gc.get_count()[0]


def frames_relayed() -> dict[str, float]:
    from prometheus_client import REGISTRY

    return {
        direction: REGISTRY.get_sample_value(
            "bridge_relay_frames_total", {"provider": PROVIDER, "direction": direction}
        )
        or 0.0
        for direction in ("to_ultravox", "to_platform")
    }


def live_relays() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("bridge_relay_live", {"provider": PROVIDER}) or 0.0


async def count(window: float, callers_of: str | None) -> tuple[Calls, dict[str, float], int]:
    """Calls and allocations for `window` seconds, and the unreachable objects found at its end."""
    base = sys._getframe()
    while base.f_code.co_flags & inspect.CO_COROUTINE:  # down to the event loop's caller,
        assert base.f_back is not None  # the frame every task and callback runs on
        base = base.f_back
    gc.collect()
    gc.disable()
    # Objects that live through the window, so that the young count, which cannot fall below
    # zero, counts every object freed in it.
    ballast = [[] for _ in range(100_000)]  # type: ignore[var-annotated]
    try:
        before = frames_relayed()
        counter = Calls(base, callers_of)
        sys.setprofile(counter)
        try:
            await asyncio.sleep(window)
        finally:
            sys.setprofile(None)
        after = frames_relayed()
        del ballast
        unreachable = gc.collect()
    finally:
        gc.enable()
    return counter, {d: after[d] - before[d] for d in after}, unreachable


async def measure(args: argparse.Namespace) -> None:
    from app.main import create_app
    from app.ws_protocol import LeanWebSocketProtocol

    rest_port, socket_port, app_port = free_port(), free_port(), free_port()
    fake = subprocess.Popen(  # noqa: ASYNC220 - started before anything is counted
        [
            sys.executable,
            str(BENCH / "relay_bench.py"),
            "--fake-ultravox",
            str(rest_port),
            str(socket_port),
        ]
    )
    driver: subprocess.Popen[bytes] | None = None
    os.environ.update(
        ULTRAVOX_API_KEY="bench-key",
        ULTRAVOX_API_URL=f"http://{HOST}:{rest_port}/api",
        VERIFY_SIGNATURES="false",
        PUBLIC_BASE_URL="https://bridge.bench",
        LOG_LEVEL="INFO",
        DATABASE_URL=f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/calls.db",
    )
    config = uvicorn.Config(
        create_app(setup_logging=True),
        host=HOST,
        port=app_port,
        log_level="warning",
        access_log=False,
        ws=LeanWebSocketProtocol if args.ws == "service" else args.ws,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        wait_for_port(rest_port, fake)
        while not server.started:  # uvicorn sets a flag, not an event
            if serving.done():
                await serving  # it could not start: its error
                raise SystemExit("the service did not start")
            await asyncio.sleep(0.05)
        driver = subprocess.Popen(  # noqa: ASYNC220 - started before anything is counted
            [sys.executable, __file__, "--driver", str(app_port), str(args.calls)]
        )
        deadline = time.monotonic() + 30
        while live_relays() < args.calls:
            if time.monotonic() > deadline or driver.poll() is not None:
                raise SystemExit(f"{live_relays():.0f} of {args.calls} calls came up")
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.warmup)
        calls, frames, unreachable = await count(args.window, args.callers)
        if live_relays() < args.calls:
            raise SystemExit("a call ended during the count")
    finally:
        if driver is not None:
            driver.send_signal(signal.SIGTERM)
            driver.wait(timeout=10)
        server.should_exit = True
        await serving
        fake.terminate()
        fake.wait(timeout=10)
    print(report(args, calls, frames, unreachable))


def report(
    args: argparse.Namespace, calls: Calls, frames: dict[str, float], unreachable: int
) -> str:
    both = frames["to_ultravox"] + frames["to_platform"]
    per = {**frames, "other": both}
    lines = [
        f"{args.calls} calls, {args.window:g} s: {frames['to_ultravox']:.0f} caller frames to"
        f" Ultravox, {frames['to_platform']:.0f} agent frames to the platform",
        "",
    ]
    for direction in ("to_ultravox", "to_platform", "other"):
        counts, n = calls.packages[direction], per[direction]
        python = sum(calls.python[direction].values())
        lines.append(
            f"{direction}: per {'frame either way' if direction == 'other' else 'frame'},"
            f" {sum(counts.values()) / n:.1f} calls ({python / n:.1f} Python),"
            f" {calls.objects[direction] / n:.1f} objects allocated"
        )
        for group, calls_in in counts.most_common(args.top):
            lines.append(f"  {calls_in / n:8.2f}  {group}")
        if args.functions:
            lines.append("  busiest functions:")
            for function, calls_in in calls.functions[direction].most_common(args.functions):
                lines.append(f"  {calls_in / n:8.2f}  {function}")
            lines.append("  where objects were allocated:")
            for function, objects in calls.allocators[direction].most_common(args.functions):
                lines.append(f"  {objects / n:8.2f}  {function}")
        lines.append("")
    lines.append("where the event loop entered Python, per frame either way:")
    for root, n in calls.roots.most_common(args.top):
        lines.append(f"  {n / both:8.3f}  {root}")
    if calls.callers:
        lines.append(f"calls into {calls.callers_of} (and what they call) from, per frame:")
        for caller, n in calls.callers.most_common(20):
            lines.append(f"  {n / both:8.2f}  {caller}")
    lines.append("")
    lines.append(f"unreachable at the end of the window: {unreachable / both:.3f} per frame")
    return "\n".join(lines)


async def drive(app_port: int, calls: int) -> None:
    """The fake Vonage side: `calls` calls, each speaking a frame every 20 ms until SIGTERM."""
    import httpx
    from relay_bench import caller_audio, one_call

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with httpx.AsyncClient(timeout=30) as http:
        live = [await one_call(n, app_port, http) for n in range(calls)]
    await caller_audio(live, stop, "lockstep")
    for call in live:
        if call.transport is not None:
            call.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5, help="simulated calls")
    parser.add_argument("--window", type=float, default=4.0, help="seconds counted, each pass")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before counting")
    parser.add_argument("--top", type=int, default=25, help="packages listed")
    parser.add_argument("--functions", type=int, default=0, help="functions listed")
    parser.add_argument("--callers", help="list where calls into this package come from")
    parser.add_argument(
        "--ws",
        default="service",
        choices=["service", "auto", "websockets", "websockets-sansio", "wsproto"],
        help="the WebSocket protocol in the service: its own (app/ws_protocol.py, as `serve` runs "
        "it) or one of uvicorn's",
    )
    parser.add_argument("--driver", nargs=2, type=int, metavar=("APP_PORT", "CALLS"))
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    if args.driver:
        uvloop.run(drive(*args.driver))
        return
    sys.path.insert(0, str(ROOT))
    # The log lines are written, as in production, but not to this terminal.
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
    try:
        uvloop.run(measure(args))
    finally:
        sys.stderr = stderr


if __name__ == "__main__":
    main()
