"""Python function calls per webhook: a measure of the webhook path's length that, unlike
timings on a shared machine, is the same from run to run.

The service's ASGI application (and, for scale, the floor peer's, bench/peers/floor.py) is
called in-process with signed Twilio webhooks, one after another, under `sys.setprofile`; the
stand-in Ultravox runs in its own process on loopback, reached through the service's own
transport. Every Python call and every call into C is counted, grouped by the package it
belongs to, from the request to the end of the answer, and then for the background work the
webhooks left behind (records written, log lines): uvicorn's protocol is not included, for
either application.

With --phases the service's calls are also split by where the webhook was when they were made:
before the Ultravox request is written, from its answer's bytes to the TwiML sent, after it
(the log line, metrics and record), and in other tasks (the records writer's batches).

Usage: python bench/call_count.py [--webhooks 300] [--top 25] [--phases]
"""

import argparse
import asyncio
import collections
import contextlib
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop
from processes import HOST, free_port, wait_for_port
from webhooks import TWILIO_TOKEN, ULTRAVOX_KEY, twilio_webhooks

ROOT = Path(__file__).resolve().parent.parent
Scope = dict[str, Any]
App = Callable[[Scope, Any, Any], Any]


def where(code: types.CodeType | None, function: Any = None) -> str:
    """The package a call belongs to: `app.x`, a library's top-level name, or `stdlib`."""
    if code is None:
        module = getattr(function, "__module__", None) or type(function).__module__
        top = (module or "builtins").split(".")
        return "C:" + (".".join(top[:2]) if top[0] == "app" else top[0])
    path = code.co_filename
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/app/" in path and not path.startswith(str(ROOT / "bench")):
        parts = Path(path.rsplit("/app/", 1)[1]).with_suffix("").parts
        return ".".join(("app", *parts[:1]))
    if path.startswith(str(ROOT / "bench")):
        return "bench"
    return "stdlib." + Path(path).stem


BEFORE = "before the Ultravox request is written"
ANSWER = "from its answer's bytes to the TwiML sent"
AFTER = "after the TwiML was sent (log line, metrics, record: `Reports.flush`)"
OTHER = "other tasks (the records writer's batches)"
PHASES = (BEFORE, ANSWER, AFTER, OTHER)


class Counter:
    def __init__(self, callers_of: str | None = None) -> None:
        # With --phases: the phase of the task that serves the webhooks, and that of loop
        # callbacks outside any task; the calls of any other task are OTHER.
        self.webhooks: asyncio.Task[Any] | None = None
        self.phase = BEFORE
        self.callback_phase = OTHER
        self.phases: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.functions: collections.Counter[str] = collections.Counter()
        self.callers_of = callers_of  # a package whose callers are counted, if any
        self.callers: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            group = where(code)
            self.functions[f"{group}:{code.co_qualname}"] += 1
        elif event == "c_call":  # counted to the package that calls it
            group = where(frame.f_code)
            self.functions[f"{where(None, arg)}:{getattr(arg, '__qualname__', '?')}"] += 1
        else:
            return
        self.calls[group] += 1
        if self.webhooks is not None:
            task = asyncio.current_task()
            if task is self.webhooks:
                self.phases[self.phase] += 1
            else:
                self.phases[self.callback_phase if task is None else OTHER] += 1
        if self.callers_of is not None and group == self.callers_of:
            caller = frame.f_back if event == "call" else frame
            while caller is not None and where(caller.f_code) == group:
                caller = caller.f_back
            if caller is not None:
                name = f"{where(caller.f_code)}:{caller.f_code.co_qualname}"
                self.callers[name] += 1

    def total(self) -> int:
        return sum(self.calls.values())


def scope_for(raw: bytes) -> tuple[Scope, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].split(b" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method.decode(),
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": (HOST, 50000),
        "server": (HOST, 8000),
        "state": {},
    }
    return scope, body


@contextlib.contextmanager
def phase_marks(counter: Counter) -> Iterator[None]:
    """Moves `counter` to ANSWER when the bytes of an answer to the service's transport arrive
    (`one` marks BEFORE and AFTER), the transport's callback included; the answered webhooks'
    reports, which a timer makes a moment after the answers (`Reports.flush`), are AFTER."""
    from app.api.webhooks import Reports
    from app.asyncio_transport import _Connection

    data_received, flush = _Connection.data_received, Reports.flush

    def marked_data_received(self: _Connection, data: bytes) -> None:
        counter.phase = counter.callback_phase = ANSWER
        try:
            data_received(self, data)
        finally:
            counter.callback_phase = OTHER

    def marked_flush(self: Reports) -> None:
        counter.callback_phase = AFTER
        try:
            flush(self)
        finally:
            counter.callback_phase = OTHER

    _Connection.data_received = marked_data_received  # type: ignore[method-assign]
    Reports.flush = marked_flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        _Connection.data_received = data_received  # type: ignore[method-assign]
        Reports.flush = flush  # type: ignore[method-assign]


async def one(app: App, raw: bytes, counter: Counter | None = None) -> tuple[int, bytes]:
    scope, body = scope_for(raw)
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if counter is not None and message["type"] == "http.response.body":
            counter.phase = AFTER

    if counter is not None:
        counter.phase = BEFORE
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def lifespan(app: App) -> tuple[Callable[[], Any], asyncio.Task[None]]:
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()
        else:
            stopped.set()

    await queue.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "state": {}}, queue.get, send))
    await started.wait()

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await stopped.wait()

    return stop, task


async def measure(
    name: str,
    app: App,
    webhooks: list[bytes],
    warm: int,
    callers_of: str | None,
    phases: bool = False,
) -> Counter:
    """Calls from the first counted webhook until the work it left behind is done."""
    counter = Counter(callers_of)
    marked = counter if phases else None
    # Marked from the warm-up on: uvloop keeps a connection's `data_received` from its start.
    with phase_marks(counter) if phases else contextlib.nullcontext():
        stop, _ = await lifespan(app)
        for raw in webhooks[:warm]:
            await one(app, raw)
        await asyncio.sleep(0.5)  # the warm-up's records are written before counting starts
        if phases:
            counter.webhooks = asyncio.current_task()
        sys.setprofile(counter)
        try:
            for raw in webhooks[warm:]:
                status, body = await one(app, raw, marked)
                if status != 200 or b"<Stream" not in body:
                    raise SystemExit(f"{name}: {status} {body[:200]!r}")
            await asyncio.sleep(0.6)  # the records writer gathers for 200 ms, then writes
        finally:
            sys.setprofile(None)
        await stop()
    return counter


def table(rows: dict[str, Counter], count: int, top: int, functions: int) -> str:
    lines = []
    for name, counter in rows.items():
        lines.append(f"{name}: {counter.total() / count:.0f} calls per webhook")
        if len(counter.phases) > 1:
            for phase in PHASES:
                lines.append(f"  {counter.phases[phase] / count:8.1f}  {phase}")
            lines.append("  by package:")
        for group, calls in counter.calls.most_common(top):
            lines.append(f"  {calls / count:8.1f}  {group}")
        if counter.callers:
            lines.append(f"  calls into {counter.callers_of} (and what they call) from:")
            for caller, calls in counter.callers.most_common(20):
                lines.append(f"  {calls / count:8.1f}  {caller}")
        if functions:
            lines.append("  busiest functions:")
            for function, calls in counter.functions.most_common(functions):
                lines.append(f"  {calls / count:8.1f}  {function}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=300)
    parser.add_argument("--warm", type=int, default=100, help="webhooks before counting")
    parser.add_argument("--top", type=int, default=25, help="packages listed")
    parser.add_argument("--functions", type=int, default=0, help="functions listed")
    parser.add_argument("--callers", help="list where calls into this package come from")
    parser.add_argument(
        "--phases", action="store_true", help="also split the service's calls by phase"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        help="count the service's `app` from this directory, e.g. an older commit's "
        "(`git archive COMMIT app | tar -x -C DIR`)",
    )
    args = parser.parse_args()
    standin_port = free_port()
    standin = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "standin.py"), "--port", str(standin_port)]
    )
    try:
        wait_for_port(standin_port, standin)
        os.environ.update(
            ULTRAVOX_API_KEY=ULTRAVOX_KEY,
            ULTRAVOX_API_URL=f"http://{HOST}:{standin_port}/api",
            TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
            VERIFY_SIGNATURES="true",
            HOST=HOST,
            PORT="8000",
            LOG_LEVEL="INFO",
            DATABASE_URL=f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/calls.db",
        )
        sys.path.insert(0, str(ROOT / "bench" / "peers"))
        sys.path.insert(0, str(args.source.resolve()))
        from floor import Floor

        from app.main import create_app

        service = create_app(setup_logging=True)
        # The log lines are written, as in production, but not to this terminal.
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
        warm = args.warm
        hooks = twilio_webhooks(8000, warm + args.webhooks)
        rows = {
            "service": uvloop.run(
                measure("service", service, hooks, warm, args.callers, args.phases)
            ),
            "floor": uvloop.run(measure("floor", Floor(), hooks, warm, args.callers)),
        }
        sys.stderr = stderr
        print(table(rows, args.webhooks, args.top, args.functions))
    finally:
        standin.terminate()
        standin.wait()


if __name__ == "__main__":
    main()
