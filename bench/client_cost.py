"""What one Ultravox request costs the service's CPU with each HTTP client it could use: httpx
with its own transport (one connection pool), httpx's AsyncClient over the service's
AsyncioTransport, the service's own client (httpx requests sent straight to that transport),
and aiohttp alone (the floor for the last). Each sends the same call-creation
requests to the local stand-in at the same concurrency; CPU time is this process's own.

Usage: python bench/client_cost.py [--concurrency 50] [--requests 3000] [--delay-ms 20]
"""

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import uvloop
from processes import HOST, free_port, wait_for_port

from app.asyncio_transport import AsyncioTransport
from app.ultravox import UltravoxClient

BODY = {
    "systemPrompt": "You are a friendly voice assistant answering a phone call.",
    "medium": {"twilio": {}},
    "metadata": {"provider": "twilio", "providerCallId": "CA0123456789abcdef0123456789abcdef"},
}
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(post: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> str:
    async def send(count: int) -> None:
        remaining = [count]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                await post()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await send(4 * concurrency)  # connections open, code warm
    cpu_before, began = cpu_seconds(), time.perf_counter()
    await send(requests)
    cpu_ms = 1000 * (cpu_seconds() - cpu_before) / requests
    return f"{cpu_ms:.2f} ms | {requests / (time.perf_counter() - began):.0f}"


async def compare(url: str, requests: int, concurrency: int) -> list[tuple[str, str]]:
    headers = {"X-API-Key": "bench-ultravox-key"}
    rows = []
    for name, transport in (
        ("httpx, its own transport", httpx.AsyncHTTPTransport(limits=LIMITS)),
        ("httpx, AsyncioTransport (the service's)", AsyncioTransport(LIMITS)),
    ):
        async with httpx.AsyncClient(transport=transport) as client:

            async def post_httpx(client: httpx.AsyncClient = client) -> None:
                (await client.post(url, json=BODY, headers=headers)).json()

            rows.append((name, await measure(post_httpx, requests, concurrency)))
    async with AsyncioTransport(LIMITS) as service_transport:  # capped, as the service's
        ultravox = UltravoxClient(
            service_transport,
            api_url=url.removesuffix("/calls"),
            api_key=headers["X-API-Key"],
            deadline_seconds=10,
        )

        async def post_direct() -> None:
            await ultravox.create_call(BODY)

        name = "UltravoxClient: httpx requests straight to the service's transport"
        rows.append((name, await measure(post_direct, requests, concurrency)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def post_aiohttp() -> None:
            async with session.post(url, json=BODY, headers=headers) as response:
                await response.json()

        rows.append(("aiohttp", await measure(post_aiohttp, requests, concurrency)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    port = free_port()
    script = str(Path(__file__).with_name("standin.py"))
    standin = subprocess.Popen(
        [sys.executable, script, "--port", str(port), "--delay-ms", str(args.delay_ms)]
    )
    try:
        wait_for_port(port, standin)
        url = f"http://{HOST}:{port}/api/calls"
        rows = uvloop.run(compare(url, args.requests, args.concurrency))
    finally:
        standin.terminate()
        standin.wait(timeout=10)
    print(
        f"{args.requests} requests at {args.concurrency} concurrent, "
        f"stand-in delay {args.delay_ms:g} ms\n"
    )
    print("| Client | CPU per request | Requests/s |\n| --- | ---: | ---: |")
    for name, measured in rows:
        print(f"| {name} | {measured} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
