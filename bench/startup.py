"""Start-up cost of the service, with and without outbound calling configured.

Each sample is a fresh interpreter that imports `app.main` and runs the application's start-up
(lifespan) with test settings, so it measures what a restart costs. Outbound calling off must
cost what the inbound-only service cost before it existed; on, it adds the provider SDKs.

    .venv/bin/python bench/startup.py [--runs 7] [--path DIR]

`--path` puts another checkout's `app` package first, to compare with an earlier commit.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

SAMPLE = r"""
import asyncio, json, sys, time
started = time.perf_counter()
from app.main import create_app
from app.config import Settings
imported = time.perf_counter()
values = {"ultravox_api_key": "k", "twilio_auth_token": "t", "plivo_auth_token": "p"}
if sys.argv[1] == "on":
    values |= {
        "bridge_api_tokens": "token",
        "twilio_account_sid": "AC" + "0" * 32,
        "telnyx_api_key": "KEY",
        "telnyx_connection_id": "1",
        "plivo_auth_id": "MA" + "0" * 18,
        "public_base_url": "https://bridge.example.com",
    }
settings = Settings(_env_file=None, **values)
app = create_app(settings)

async def start() -> None:
    async with app.router.lifespan_context(app):
        pass

asyncio.run(start())
ready = time.perf_counter()
print(json.dumps({"import_ms": (imported - started) * 1000, "ready_ms": (ready - started) * 1000,
                  "telnyx_loaded": "telnyx" in sys.modules}))
"""


def sample(outbound: str, path: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path
    done = subprocess.run(
        [sys.executable, "-c", SAMPLE, outbound],
        capture_output=True,
        text=True,
        env=env,
        # `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
        cwd=path or None,
        check=True,
        timeout=120,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--path", help="a checkout whose app package to measure instead")
    parser.add_argument("--modes", default="off,on", help="off, on or off,on")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        runs = [sample(mode, args.path) for _ in range(args.runs)]
        imported = statistics.median(run["import_ms"] for run in runs)
        ready = statistics.median(run["ready_ms"] for run in runs)
        telnyx = any(run["telnyx_loaded"] for run in runs)
        print(
            f"outbound {mode}: import app.main {imported:.0f} ms, ready {ready:.0f} ms "
            f"(median of {args.runs}; telnyx SDK loaded: {telnyx})"
        )


if __name__ == "__main__":
    main()
