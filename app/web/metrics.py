"""Metrics of web calls, in the default registry beside the other `bridge_` metrics."""

from prometheus_client import Counter

WEB_REQUESTS = Counter(
    "bridge_web_calls",
    "Requests to start a web call, by outcome: created, forbidden_origin, forbidden_token, "
    "not_found, bad_request, too_large, rate_limited_client, rate_limited_global, at_capacity, "
    "ultravox_failed.",
    ["outcome"],
)
