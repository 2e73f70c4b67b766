"""Metrics of web calls, in the default registry beside the other `bridge_` metrics."""

from prometheus_client import Counter

WEB_REQUESTS = Counter(
    "bridge_web_calls",
    "Requests to start a web call, by outcome: created, forbidden_origin, forbidden_token, "
    "not_found, bad_request, too_large, rate_limited_client, rate_limited_global, at_capacity, "
    "ultravox_failed.",
    ["outcome"],
)

WEB_CALL_ENDS = Counter(
    "bridge_web_call_ends",
    "Requests of a page to end its web call, by outcome: ended, already_ended, forbidden_origin, "
    "forbidden_secret, not_found, bad_request, too_large, ultravox_failed.",
    ["outcome"],
)
