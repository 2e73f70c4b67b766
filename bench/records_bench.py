"""What recording calls adds to a webhook's answer: the same signed Twilio webhooks answered
by the whole app in-process (Ultravox mocked with no delay), with the record written (SQLite
file, and PostgreSQL when --postgres-url is given) and with recording switched off, and how
long the writer takes to catch up afterwards. Results: docs/benchmarks.md, "Call records".

    .venv/bin/python bench/records_bench.py [--requests 2000] [--concurrency 1,20]
                                             [--postgres-url postgresql+asyncpg://...]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import respx
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

import app.main as app_main
from app.config import Settings
from app.http_transport import CappedTransport
from app.main import create_app
from app.records.models import CallRecord

TOKEN = "bench-twilio-token"
API_URL = "https://ultravox.bench/api"
BASE = "http://bridge.bench"


def webhook(validator: RequestValidator) -> tuple[str, bytes, dict[str, str]]:
    """A distinct call's signed webhook: its CallSid, body and headers."""
    fields = {
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "CallSid": "CA" + uuid.uuid4().hex,
        "CallStatus": "ringing",
        "From": "+15005550006",
        "To": "+15005550001",
    }
    signature = validator.compute_signature(f"{BASE}/twilio/incoming", fields)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    return fields["CallSid"], urlencode(fields).encode(), headers


def created(request: httpx.Request) -> httpx.Response:
    call_id = str(uuid.uuid4())
    return httpx.Response(201, json={"callId": call_id, "joinUrl": f"wss://uv.bench/{call_id}"})


def respx_transport() -> httpx.AsyncBaseTransport:
    """httpx's own transport under the Ultravox client, as in the tests: respx stands in for
    Ultravox there and not under the production asyncio transport. This bench compares the
    webhook path with and without recording, so the transport is the same on both sides."""
    return CappedTransport(httpx.AsyncHTTPTransport(limits=app_main.ULTRAVOX_LIMITS))


async def run(settings: Settings, requests: int, concurrency: int, record: bool) -> dict[str, Any]:
    app_main.ultravox_transport = respx_transport
    app = create_app(settings)
    validator = RequestValidator(TOKEN)
    webhooks = [webhook(validator) for _ in range(requests)]
    latencies: list[float] = []
    with respx.mock(base_url=API_URL, assert_all_called=False) as mock:
        mock.post("/calls").mock(side_effect=created)
        async with app.router.lifespan_context(app):
            if not record:
                app.state.bridge.lifecycle.decided = lambda decision: None
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                queue = list(webhooks)

                async def worker() -> None:
                    while queue:
                        _, body, headers = queue.pop()
                        started = time.perf_counter()
                        response = await client.post(
                            "/twilio/incoming", content=body, headers=headers
                        )
                        latencies.append(time.perf_counter() - started)
                        assert response.status_code == 200 and b"<Stream" in response.content

                lost_before = lost()
                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                answered = time.perf_counter() - started
                await app.state.records._queue.join()
                caught_up = time.perf_counter() - started
                # Every webhook's record written, none lost: a fast writer that drops changes
                # is not one. (The database may hold other records: counted by CallSid.)
                sids = [sid for sid, _, _ in webhooks]
                async with app.state.records.sessions() as session:
                    query = select(func.count()).where(CallRecord.provider_call_id.in_(sids))
                    stored = await session.scalar(query)
                assert (stored, lost()) == (requests if record else 0, lost_before), stored
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
        "rate": requests / answered,
        "writer_lag_s": caught_up - answered,
    }


def lost() -> float:
    """The changes the records writer has lost so far, for any reason."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "bridge_records_lost"
        for sample in metric.samples
        if sample.name == "bridge_records_lost_total"
    )


def settings_for(database_url: str) -> Settings:
    values: dict[str, Any] = {
        "ultravox_api_key": "bench-key",
        "ultravox_api_url": API_URL,
        "twilio_auth_token": TOKEN,
        "database_url": database_url,
    }
    return Settings(_env_file=None, **values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,20")
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="records-bench-"))
    databases = {"sqlite": f"sqlite+aiosqlite:///{folder / 'calls.db'}"}
    if args.postgres_url:
        databases["postgresql"] = args.postgres_url
    print("database    record conc  p50 ms  p99 ms  max ms  webhooks/s  writer lag s")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        for name, url in databases.items():
            for record in (False, True):
                result = await run(settings_for(url), args.requests, concurrency, record)
                print(
                    f"{name:<11} {'on' if record else 'off':<6} {concurrency:>4} "
                    f"{result['p50_ms']:7.2f} {result['p99_ms']:7.2f} {result['max_ms']:7.2f} "
                    f"{result['rate']:11.0f} {result['writer_lag_s']:13.2f}"
                )


if __name__ == "__main__":
    asyncio.run(main())
