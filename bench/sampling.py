"""Profiling the service with py-spy while a load runs, summarised per stage of a webhook."""

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path


def profile(pid: int, drive: Callable[[], object], scratch: Path, keep: Path | None) -> str:
    """Sample process `pid` with py-spy while `drive()` runs a load; a summary as markdown.
    `keep` names a file for py-spy's collapsed stacks (for flame-graph tools)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return "py-spy is not installed (`.venv/bin/pip install py-spy`)"
    raw = scratch / "profile.txt"
    # --gil: only the thread running Python counts, not the idle thread-pool workers.
    command = [py_spy, "record", "--pid", str(pid), "--gil", "--rate", "500", "--format", "raw"]
    sampler = subprocess.Popen(
        [*command, "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.0)  # py-spy attaches
    drive()
    sampler.send_signal(signal.SIGINT)
    try:
        sampler.wait(timeout=20)
    except subprocess.TimeoutExpired:
        sampler.kill()
        sampler.wait()
    if not raw.exists():
        return "py-spy could not attach (it needs ptrace permission)"
    if keep is not None:
        shutil.copyfile(raw, keep)
    return summarise_profile(raw.read_text())


# Stages of a webhook, each named by the function that does it (the frame's text in py-spy's
# stacks); a stage's share counts every sample with that function on the stack.
STAGES = (
    ("Whole webhook (app/api/webhooks.py:WebhookDispatch)", "WebhookDispatch.__call__"),
    ("Read the request (webhook_from)", "webhooks.py:webhook_from"),
    ("Check the signature (ProviderAdapter.check)", "ProviderAdapter.check"),
    ("Create the Ultravox call (UltravoxClient._create)", "UltravoxClient._create"),
    ("... of which the transport (app/asyncio_transport.py)", "asyncio_transport.py"),
    ("... of which the httpx objects around it", "httpx/"),
    ("Build the answer XML (stream_answer)", "stream_answer"),
    ("After the answer: log line, metrics, record (Bridge._report)", "Bridge._report"),
    ("Log lines (logging)", "logging/__init__.py:Logger."),
    ("Records writer (CallRecords._write)", "CallRecords._write"),
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
