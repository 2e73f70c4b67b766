"""Prometheus metrics of call records, events in and out, and live-call limits. Label values
are fixed sets or route names from the routes file, never request data."""

from prometheus_client import Counter, Gauge, Histogram

RECORDS_WRITTEN = Counter("bridge_records_written", "Call record changes written to the database.")
RECORDS_LOST = Counter(
    "bridge_records_lost",
    "Call record changes not written: `queue_full` (the writer fell behind), `database` (the "
    "database refused or was unreachable). The calls themselves went on.",
    ["reason"],
)
RECORDS_QUEUED = Gauge("bridge_records_queued", "Call record changes waiting for the writer.")
RECORD_WRITE_SECONDS = Histogram(
    "bridge_records_write_duration_seconds",
    "Time to write one batch of call record changes.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ULTRAVOX_EVENTS = Counter(
    "bridge_ultravox_events",
    "Ultravox account webhooks by event and result (recorded, unknown_call, forbidden, "
    "bad_request, too_large, unavailable).",
    ["event", "result"],
)
STATUS_CALLBACKS = Counter(
    "bridge_status_callbacks",
    "Provider call-status callbacks by provider and result (recorded, unknown_call, forbidden, "
    "bad_request, too_large, unavailable).",
    ["provider", "result"],
)
CALLS_EXPIRED = Counter(
    "bridge_calls_expired",
    "Calls closed by the bridge because no end was reported by their join timeout plus "
    "maximum duration.",
)
LIVE_CALLS = Gauge(
    "bridge_live_calls",
    "Live calls per route, counted across replicas when REDIS_URL is set (as of this "
    "replica's last look); `_all` is the global count.",
    ["route"],
)
REFUSED_OVER_LIMIT = Counter(
    "bridge_calls_refused_over_limit",
    "Calls refused because MAX_CONCURRENT_CALLS or the route's max_concurrent_calls was reached.",
    ["route"],
)
LIMIT_ERRORS = Counter(
    "bridge_live_calls_errors",
    "Failed operations on the shared live-call count (Redis); the call was let through.",
)
DELIVERIES = Counter(
    "bridge_call_events_deliveries",
    "End-of-call summaries POSTed to CALL_EVENTS_URL by result: delivered, retry (the attempt "
    "failed, another is scheduled), failed (given up).",
    ["result"],
)
DELIVERIES_PENDING = Gauge(
    "bridge_call_events_pending", "End-of-call summaries waiting for delivery (as last seen)."
)
