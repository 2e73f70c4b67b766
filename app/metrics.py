"""The service's Prometheus metrics, in the default registry, all named `bridge_...`.

Label values are fixed sets (providers, outcomes, status codes), never request data, so a flood
of forged webhooks cannot grow the number of series.

With several workers (app/workers.py) each keeps its values in files in the directory
`PROMETHEUS_MULTIPROC_DIR` names, which prometheus_client reads when it is imported; `exposition`
then sums every worker's, so any worker's `/metrics` counts them all."""

import os
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

WEBHOOKS = Counter(
    "bridge_webhooks",
    "Provider webhooks handled, by provider and outcome (answered, duplicate, fallback, "
    "rejected, forbidden, bad_request, too_large, unavailable).",
    ["provider", "outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "bridge_webhook_duration_seconds",
    "Time from receiving a provider webhook to its answer.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
WEBHOOKS_IN_FLIGHT = Gauge(
    "bridge_webhooks_in_flight",
    "Provider webhooks being answered now.",
    multiprocess_mode="livesum",  # the sum over the workers alive
)

ULTRAVOX_REQUEST_SECONDS = Histogram(
    "bridge_ultravox_request_duration_seconds",
    "Duration of each HTTP request to Ultravox's API (one per attempt).",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 14),
)
ULTRAVOX_RESPONSES = Counter(
    "bridge_ultravox_responses",
    "Answers from Ultravox's API by HTTP status code; `error` when the request failed without "
    "a status (connection refused, broken connection), `timeout` when none came in time.",
    ["status"],
)
ULTRAVOX_RETRIES = Counter(
    "bridge_ultravox_retries", "Requests to Ultravox repeated after a retryable failure."
)

STORE_ERRORS = Counter(
    "bridge_store_errors",
    "Failed operations on the shared store (Redis); the call went on without de-duplication.",
    ["operation"],
)

TRANSFERS = Counter(
    "bridge_transfers",
    "Transfer steps by provider, mode (cold, warm) and outcome (requested, closed, duplicate, "
    "started, provider_error, connected, declined, unanswered, returned, fallback).",
    ["provider", "mode", "outcome"],
)


Metric = TypeVar("Metric", Counter, Gauge, Histogram)
_SERIES: dict[tuple[Any, tuple[str, ...]], Any] = {}


def series(metric: Metric, *values: str) -> Metric:
    """`metric.labels(*values)`, looked up once: prometheus_client checks and joins the labels
    on every call, which the webhook path would pay several times per webhook. Label values are
    fixed sets, so this holds a bounded number of series."""
    key = (metric, values)
    found = _SERIES.get(key)
    if found is None:
        found = _SERIES[key] = metric.labels(*values)
    return found


def _registry() -> CollectorRegistry | None:
    """The registry of every worker's values in multi-worker mode; None for this process's own
    default registry. Set by serve for the workers, not a setting: read where prometheus_client
    reads it."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return None
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


_SUMMED = _registry()


def exposition() -> bytes:
    """Every `bridge_` metric in Prometheus's text format: this process's, and the Python
    process's own; with several workers, the sum of all of theirs (no process metrics)."""
    return generate_latest() if _SUMMED is None else generate_latest(_SUMMED)
