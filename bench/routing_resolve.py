"""How long finding a call's route takes, and loading the routes file, as the table grows.

Run: .venv/bin/python bench/routing_resolve.py
Writes nothing; copy the printed table into docs/benchmarks.md."""

import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from app.calltypes import InboundCall
from app.config import Settings
from app.routing import load_routing_table

RESOLVES = 200_000


def routes_yaml(count: int) -> str:
    lines = ["routes:"]
    for index in range(count):
        lines += [
            f"  - name: r{index}",
            f'    number: "+1500{index:07d}"',
            "    agent: {id: agent-1}",
        ]
    # A caller-prefix route before the catch-all for the last number: two rules to check.
    lines[-3:-3] = [
        "  - name: blocked",
        f'    number: "+1500{count - 1:07d}"',
        '    caller_prefix: "+44"',
        "    reject: true",
    ]
    return "\n".join(lines) + "\ndefault:\n  reject: true\n"


def per_call_microseconds(table: object, call: InboundCall) -> float:
    resolve = table.resolve  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(RESOLVES):
        resolve(call)
    return (time.perf_counter() - started) / RESOLVES * 1e6


def main() -> None:
    settings = Settings(_env_file=None, ultravox_api_key=SecretStr("bench"))
    print("| routes | load ms | resolve hit µs | resolve miss (default) µs |")
    print("| ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "routes.yaml"
        for count in (1, 100, 10_000):
            path.write_text(routes_yaml(count))
            started = time.perf_counter()
            table = load_routing_table(path, settings)
            load_ms = (time.perf_counter() - started) * 1000
            hit = InboundCall("twilio", "CA1", "+15005550006", f"+1500{count - 1:07d}")
            miss = InboundCall("twilio", "CA1", "+15005550006", "+19995550000")
            print(
                f"| {count} | {load_ms:.1f} | {per_call_microseconds(table, hit):.2f} "
                f"| {per_call_microseconds(table, miss):.2f} |"
            )


if __name__ == "__main__":
    main()
