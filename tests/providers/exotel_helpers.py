"""Exotel test data: its requests as its URL-driven applets send them (no signature; the secret
is the URL's last path segment), by GET, form POST or JSON POST."""

import json
from typing import Any
from urllib.parse import urlencode

from tests.conftest import Webhook, make_settings

EXOTEL_TOKEN = "exotel-url-token-0123456789abcdefghijklmn"
ROTATED_TOKEN = "rotated-exotel-token-9876543210zyxwvutsrq"
EXOTEL_CALL_SID = "b6cc7be7a6b2e0a9f8f2c5d6e7f80a11"
# Exotel's national 0-form, and the same numbers in E.164 (+91 test-range numbers).
CALL_FROM = "01500555006"
CALL_TO = "01500555001"
CALLER_E164 = "+911500555006"
CALLED_E164 = "+911500555001"


def exotel_settings(**overrides: Any) -> Any:
    values: dict[str, Any] = {"exotel_url_tokens": f"{EXOTEL_TOKEN},{ROTATED_TOKEN}"}
    values.update(overrides)
    return make_settings(**values)


def exotel_fields(call_sid: str = EXOTEL_CALL_SID, **extra: str) -> dict[str, str]:
    return {
        "CallSid": call_sid,
        "CallFrom": CALL_FROM,
        "CallTo": CALL_TO,
        "Direction": "incoming",
        "Created": "Mon, 30 Nov 2026 10:00:00",
        **extra,
    }


def exotel_request(
    fields: dict[str, str],
    encoding: str = "query",
    token: str | None = EXOTEL_TOKEN,
    path: str = "/exotel/incoming",
) -> Webhook:
    """A request from Exotel: GET with a query, or POST with a form or a JSON body."""
    url = f"{path}/{token}" if token is not None else path
    if encoding == "query":
        return Webhook("GET", f"{url}?{urlencode(fields)}")
    if encoding == "form":
        return Webhook("POST", url, {}, urlencode(fields).encode())
    return Webhook("POST", url, {"content-type": "application/json"}, json.dumps(fields).encode())
