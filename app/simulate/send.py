"""Sending a simulated webhook to a running service, bounded in time and size, with a progress
line while it waits."""

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import httpx

from app.providers.simulator import (
    HttpMethod,
    SimulatedWebhook,
    Simulator,
)
from app.simulate.verdicts import Verdict, broken, judge, timed_out, unreachable

DEFAULT_FROM = "+15005550006"


DEFAULT_TO = "+15005550001"


# The least patient provider (Twilio) gives up on a webhook after 15 s.
DEFAULT_TIMEOUT_SECONDS = 15.0


CONNECT_TIMEOUT_SECONDS = 5.0


# Plivo accepts answers up to 100 KB; anything far larger is not a webhook answer.
MAX_ANSWER_BYTES = 256 * 1024


PROGRESS_INTERVAL_SECONDS = 0.2


# Tells simulated webhooks from the provider's in proxy and access logs; no signature covers it.
USER_AGENT = {"User-Agent": "ultravox-bridge-simulate"}


@dataclass(frozen=True)
class Simulation:
    """One simulated webhook and what came back."""

    webhook: SimulatedWebhook
    verdict: Verdict
    status_code: int | None = None
    content_type: str = ""
    body: str = ""
    elapsed_seconds: float = 0.0


class Progress:
    """A line on stderr while waiting: rewritten in place on a terminal, written once otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()

    def start(self, what: str, timeout: float) -> "asyncio.Task[None] | None":
        """Show the line; on a terminal, a task keeps the elapsed time current until cancelled."""
        if not self._live:
            self._stream.write(f"{what}: waiting up to {timeout:g} s for the answer\n")
            self._stream.flush()
            return None
        return asyncio.create_task(self._tick(what, timeout))

    async def _tick(self, what: str, limit_seconds: float) -> None:
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            self._stream.write(f"\r{what}: waiting {elapsed:4.1f} s of {limit_seconds:g} s ")
            self._stream.flush()
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)

    def clear(self) -> None:
        if self._live:
            self._stream.write("\r\033[K")
            self._stream.flush()


async def simulate(
    simulator: Simulator,
    url: str,
    *,
    method: HttpMethod,
    from_number: str = DEFAULT_FROM,
    to_number: str = DEFAULT_TO,
    wait_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: TextIO | None = None,
) -> Simulation:
    """Send `simulator`'s webhook for a new call to `url` and judge the answer."""
    webhook = simulator.webhook(url, method, from_number, to_number)
    limits = httpx.Timeout(wait_seconds, connect=min(wait_seconds, CONNECT_TIMEOUT_SECONDS))
    line = Progress(progress or sys.stderr)
    ticker = line.start(f"{simulator.title} {method} {webhook.call_id} -> {url}", wait_seconds)
    started = time.monotonic()
    try:
        # httpx's timeouts bound each read; this bounds the whole exchange, as providers do.
        async with asyncio.timeout(wait_seconds):
            status, headers, body = await _send(webhook, limits, transport)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return Simulation(webhook, unreachable(url, exc))
    except (TimeoutError, httpx.TimeoutException):
        return Simulation(webhook, timed_out(wait_seconds))
    except httpx.HTTPError as exc:
        return Simulation(webhook, broken(url, exc))
    finally:
        if ticker is not None:
            ticker.cancel()
        line.clear()
    elapsed = time.monotonic() - started
    if body is None:
        verdict = Verdict(
            "unexpected", f"the answer is over {MAX_ANSWER_BYTES // 1024} KiB: no provider takes it"
        )
        return Simulation(webhook, verdict, status, headers.get("content-type", ""), "", elapsed)
    text = body.decode("utf-8", errors="replace")
    return Simulation(
        webhook,
        judge(simulator, url, status, text, headers),
        status,
        headers.get("content-type", ""),
        text,
        elapsed,
    )


async def _send(
    webhook: SimulatedWebhook, limits: httpx.Timeout, transport: httpx.AsyncBaseTransport | None
) -> tuple[int, httpx.Headers, bytes | None]:
    """Status, headers and body of the answer; the body is None when it is too large to show."""
    async with (
        httpx.AsyncClient(transport=transport, timeout=limits, headers=USER_AGENT) as client,
        client.stream(
            webhook.method, webhook.url, headers=webhook.headers, content=webhook.body
        ) as response,
    ):
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                return response.status_code, response.headers, None
        return response.status_code, response.headers, bytes(body)
