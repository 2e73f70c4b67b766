"""The benchmark's peer, run beside the service against the same stand-in and the same webhooks:
by default `bench/peers/quickstart.js`, a server of the shape of Ultravox's Node quickstart for
Twilio (express, Node's `http` to Ultravox, TwiML from the `twilio` package, no signature
check); with `--peer floor`, `bench/peers/floor.py`, the floor of a Python server (a bare ASGI
callable under uvicorn: the signature check, one aiohttp request, TwiML as a string)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from processes import HOST
from webhooks import TWILIO_TOKEN, ULTRAVOX_KEY

PEER_DIR = Path(__file__).resolve().parent / "peers"


def peer_command(kind: str = "quickstart") -> tuple[list[str] | None, str]:
    """The command that starts the peer, installing the Node peer's packages first (`npm ci`,
    from package-lock.json) when they are missing or older than the lock file; or None and why
    not."""
    if kind == "floor":
        return [
            sys.executable,
            str(PEER_DIR / "floor.py"),
        ], "the Python floor (bench/peers/floor.py)"
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node and npm are not installed"
    installed = PEER_DIR / "node_modules" / ".package-lock.json"
    lock = PEER_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEER_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            return None, f"`npm ci` in bench/peers failed: {done.stderr.decode()[-300:]}"
    version = subprocess.run([node, "--version"], capture_output=True, check=False)
    note = f"bench/peers/quickstart.js (no signature check), Node {version.stdout.decode().strip()}"
    return [node, str(PEER_DIR / "quickstart.js")], note


def peer_env(port: int, standin_port: int) -> dict[str, str]:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    env.update(
        HOST=HOST,
        PORT=str(port),
        ULTRAVOX_API_URL=f"http://{HOST}:{standin_port}/api",
        ULTRAVOX_API_KEY=ULTRAVOX_KEY,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        NODE_ENV="production",
    )
    return env
