"""GET /metrics: the exact counters after a known sequence of webhooks."""

import httpx
import respx
from prometheus_client.parser import text_string_to_metric_families

from app.calltypes import FallbackPlan
from app.routing import RejectTarget, Route, RoutingTable
from tests.conftest import created_call, make_settings, running_app, twilio_fields, twilio_webhook

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("bridge_")
    }


def deltas(before: Samples, after: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    changed = {
        labels: value - before.get((sample, labels), 0.0)
        for (sample, labels), value in after.items()
        if sample == name
    }
    return {labels: value for labels, value in changed.items() if value}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_metrics_count_each_outcome_and_ultravox_answer(ultravox: respx.MockRouter) -> None:
    ultravox.post("/calls").mock(
        side_effect=[
            created_call(),
            httpx.Response(503, text="busy"),
            httpx.Response(400, json={"detail": "bad"}),
        ]
    )
    missing_from = {k: v for k, v in twilio_fields("CA" + "3" * 32).items() if k != "From"}
    async with running_app(make_settings()) as client:
        before = await scrape(client)
        await twilio_webhook(twilio_fields()).send(client)  # answered
        await twilio_webhook(twilio_fields()).send(client)  # duplicate
        await twilio_webhook(twilio_fields(), token="forged").send(client)  # forbidden
        await twilio_webhook(missing_from).send(client)  # bad_request
        await twilio_webhook(twilio_fields("CA" + "4" * 32)).send(client)  # 503, retry, 400
        client.app.state.bridge.routing = RoutingTable(  # type: ignore[attr-defined]
            Route("closed", RejectTarget(), FallbackPlan("closed"))
        )
        await twilio_webhook(twilio_fields("CA" + "5" * 32)).send(client)  # rejected
        after = await scrape(client)

    assert deltas(before, after, "bridge_webhooks_total") == {
        labels(provider="twilio", outcome="answered"): 1,
        labels(provider="twilio", outcome="duplicate"): 1,
        labels(provider="twilio", outcome="forbidden"): 1,
        labels(provider="twilio", outcome="bad_request"): 1,
        labels(provider="twilio", outcome="fallback"): 1,
        labels(provider="twilio", outcome="rejected"): 1,
    }
    assert deltas(before, after, "bridge_webhook_duration_seconds_count") == {
        labels(provider="twilio"): 6
    }
    assert deltas(before, after, "bridge_ultravox_responses_total") == {
        labels(status="201"): 1,
        labels(status="503"): 1,
        labels(status="400"): 1,
    }
    assert deltas(before, after, "bridge_ultravox_retries_total") == {labels(): 1}
    assert deltas(before, after, "bridge_ultravox_request_duration_seconds_count") == {labels(): 3}
    assert after[("bridge_webhooks_in_flight", labels())] == 0


async def test_oversize_webhooks_are_counted_and_unknown_providers_are_not(
    ultravox: respx.MockRouter,
) -> None:
    oversize = twilio_webhook({**twilio_fields(), "Padding": "x" * 70_000})
    async with running_app(make_settings()) as client:
        before = await scrape(client)
        await oversize.send(client)
        await client.post("/acme/incoming", content=b"x" * 70_000)
        after = await scrape(client)
    assert deltas(before, after, "bridge_webhooks_total") == {
        labels(provider="twilio", outcome="too_large"): 1
    }
