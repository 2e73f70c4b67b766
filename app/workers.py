"""Several worker processes on one port (`ultravox-bridge serve --workers N`, `WEB_CONCURRENCY`).

This process binds the port and starts N workers, each a whole service (its own event loop,
Ultravox connections and relays) accepting from the one listening socket; a worker uses about
one CPU, so this is how a container uses more than one. The workers share what must be shared
through Redis (settings require `REDIS_URL`): de-duplication, outbound answers, media sessions.
Their Prometheus metrics are kept in files in a directory this process creates and removes
(prometheus_client's multiprocess mode), and `/metrics` in any worker sums them all.

Signals go to this process (a container's PID 1) and are passed on: SIGTERM to every worker,
each draining as a single-process server does (`/readyz` 503, then the relayed calls, then the
webhooks in flight), and this process exits when the last worker has; SIGHUP to every worker,
each reloading the routes file. A worker that dies is replaced, unless it failed at start-up
(or died within `STARTUP_SECONDS`), which would fail again: then every worker is stopped and
`serve` exits 1.
"""

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from fastapi import FastAPI
from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE

from app.server import draining_server
from app.settings import ServiceSettings

logger = logging.getLogger("app.workers")

# prometheus_client reads this when it is imported: set before a worker starts, it makes the
# worker keep its metric values in files there.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A replacement for a worker that died is started no sooner than this after the last one.
RESTART_INTERVAL_SECONDS = 1.0
# A worker that dies sooner than this after it was started failed at start-up (a bad routes
# file, Redis refusing, a bug): its replacement would fail the same way.
STARTUP_SECONDS = 15.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

AppFactory = Callable[[ServiceSettings], FastAPI]


def run_worker(build_app: AppFactory, settings: ServiceSettings, listener: socket.socket) -> None:
    """One worker: the service on the inherited listening socket until SIGTERM or SIGINT."""
    server = draining_server(build_app(settings), settings)
    with suppress(KeyboardInterrupt):  # SIGINT, which uvicorn raises again once it has stopped
        server.run(sockets=[listener])


def bind(settings: ServiceSettings) -> socket.socket:
    """The listening socket the workers share."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.host, settings.port))
    listener.set_inheritable(True)
    return listener


class Workers:
    """The parent process: starts the workers, passes signals on, replaces dead workers."""

    def __init__(self, build_app: AppFactory, settings: ServiceSettings) -> None:
        self._build_app = build_app
        self._settings = settings
        # "spawn": each worker imports the service afresh, after the metrics directory is set,
        # and inherits no event loop or connection of this process.
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess] = []
        self._signals: list[int] = []
        self._stopping = False
        self._exit_code = 0
        self._last_start = -float("inf")
        self._started_at: dict[BaseProcess, float] = {}

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="ultravox-bridge-metrics-")
        os.environ[METRICS_DIR_VARIABLE] = metrics_dir
        listener = bind(self._settings)
        for sig in _FORWARDED:
            signal.signal(sig, self._on_signal)
        try:
            for _ in range(self._settings.web_concurrency):
                self._start(listener)
            logger.info(
                "workers.started",
                extra={
                    "fields": {
                        "workers": len(self._workers),
                        "pids": ",".join(str(worker.pid) for worker in self._workers),
                        "supervisor_pid": os.getpid(),
                        "address": f"{self._settings.host}:{self._settings.port}",
                    }
                },
            )
            while self._workers:
                wait([worker.sentinel for worker in self._workers], timeout=0.5)
                self._pass_on_signals()
                self._reap(listener)
        finally:
            listener.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return self._exit_code

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)  # a signal handler: the main loop does the rest

    def _start(self, listener: socket.socket) -> None:
        worker = self._context.Process(
            target=run_worker, args=(self._build_app, self._settings, listener), daemon=False
        )
        worker.start()
        self._last_start = time.monotonic()
        self._started_at[worker] = self._last_start
        self._workers.append(worker)

    def _pass_on_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig != signal.SIGHUP:
                self._stopping = True
            self._send(sig)

    def _send(self, sig: int) -> None:
        for worker in self._workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, sig)

    def _reap(self, listener: socket.socket) -> None:
        for worker in [worker for worker in self._workers if worker.exitcode is not None]:
            self._workers.remove(worker)
            lived = time.monotonic() - self._started_at.pop(worker)
            worker.join()
            # Its live gauges stop counting (prometheus_client leaves this function untyped).
            multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
            if self._stopping:
                continue
            fields = {"pid": worker.pid, "exit_code": worker.exitcode, "lived_s": round(lived, 1)}
            if worker.exitcode == STARTUP_FAILURE or lived < STARTUP_SECONDS:
                logger.error("workers.startup_failed", extra={"fields": fields})
                self._exit_code = 1
                self._stopping = True
                self._send(signal.SIGTERM)
                continue
            logger.warning("workers.replaced", extra={"fields": fields})
            time.sleep(max(0.0, self._last_start + RESTART_INTERVAL_SECONDS - time.monotonic()))
            self._start(listener)


def serve_workers(build_app: AppFactory, settings: ServiceSettings) -> int:
    """Run `settings.web_concurrency` workers of `build_app(settings)` until SIGTERM or SIGINT;
    the exit code for `serve`. `build_app` and `settings` must pickle (a module-level
    function, the loaded settings): each worker receives them."""
    return Workers(build_app, settings).run()
