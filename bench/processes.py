"""The benchmark's processes on loopback: ports, start and stop, readiness, and what /proc
says about a process (resident memory, CPU time, time spent waiting for a CPU)."""

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


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


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the stand-in exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.01)
    raise SystemExit(f"the stand-in did not listen on port {port} within {timeout:g}s")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the workers of `serve --workers N`)."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            queue += [int(child) for child in children]
    return tree


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MiB, summed over the process
    and its descendants."""
    now = peak = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name == "VmRSS":
                    now += int(value.split()[0]) / 1024
                elif name == "VmHWM":
                    peak += int(value.split()[0]) / 1024
    return now, peak


def cpu_seconds(pid: int) -> float:
    """CPU time the process and its descendants have used (user + system, all threads): unlike
    wall-clock rates it barely changes when other programs share the machine."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int) -> float:
    """Time the threads of the process and its descendants were ready to run but waited for a
    CPU (/proc schedstat): what other programs on a shared machine add to the latency."""
    waited = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    waited += int((task / "schedstat").read_text().split()[1])
    return waited / 1e9


def machine_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of the whole machine so far (/proc/stat). Steal is time the
    hypervisor gave this virtual machine's CPUs to someone else: on a cloud VM it makes every
    process here slower at once, which no per-process figure shows."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[7], sum(fields[:8])
    return 0, 0


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time stolen between two `machine_ticks()` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


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
