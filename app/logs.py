"""Logging set-up: one line per event, JSON by default, readable in a terminal, phone numbers
masked unless LOG_PHONE_NUMBERS=full."""

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# Event fields that hold phone numbers; the formatter masks them, so call sites never have to.
PHONE_FIELDS = frozenset({"from", "to", "caller", "called", "fallback_number"})
# Free-text fields that may quote someone else's text (Ultravox's or a provider's error body)
# and so a phone number: numbers inside them are masked too.
TEXT_FIELDS = frozenset({"reason", "error"})
# No logged value is longer: a request can carry 60 kB fields or a 1 MiB header, and a log
# line per request must not grow with them.
MAX_LOGGED_CHARS = 1000
# Lines a second written for each kind of refusal; the rest are counted, not written.
REFUSAL_LINES_PER_SECOND = 20
MAX_EXCEPTION_CHARS = 8000

# A phone number inside text: 7 to 15 digits, with an optional + and separators, not part of
# a longer token (an id, a UUID, a URL path).
_NUMBER_IN_TEXT = re.compile(r"(?<![\w/-])\+?[0-9](?:[ ().-]?[0-9]){6,14}(?![\w/-])")
# Credentials libraries write to their DEBUG logs: HTTP headers (uvicorn's and websockets'
# handshake lines) and URL query strings (a joinUrl's token, a PBX's token parameter).
_SECRET_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|cookie|set-cookie|"
    r"x-twilio-signature|x-plivo-signature-v3|telnyx-signature-ed25519)(\s*[:=]\s*)"
    r"(?:(basic|bearer|digest)\s+)?[^\s,;'\"]+"
)
_QUERY_STRING = re.compile(r"((?:\b[a-z][a-z0-9+.-]*://[^\s?#'\"]+|\s/[^\s?#'\"]*))\?[^\s'\"]+")

# The id of the HTTP request being served, set per request by `app.api.request_id`; every line
# logged while serving it carries the id, so one call's lines can be found together.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def mask_phone(number: str) -> str:
    """Keep enough of a number to tell calls apart, not enough to identify the person."""
    digits = sum(map(str.isdigit, number))
    if digits <= 4:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def mask_numbers_in(text: str) -> str:
    """`text` with every phone number in it masked."""
    return _NUMBER_IN_TEXT.sub(lambda found: mask_phone(found.group()), text)


def redact(text: str) -> str:
    """`text` without credentials: header values and URL query strings become `***`."""
    text = _SECRET_HEADER.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) + ' ' if m.group(3) else ''}***", text
    )
    return _QUERY_STRING.sub(lambda m: f"{m.group(1)}?***", text)


def cap(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


class EventFormatter(logging.Formatter):
    """Formats a record's message as the event name and `extra={"fields": {...}}` as its data."""

    def __init__(self, *, as_json: bool, mask_numbers: bool) -> None:
        super().__init__()
        self.as_json = as_json
        self.mask_numbers = mask_numbers

    def _fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = dict(getattr(record, "fields", None) or {})
        current_request = request_id.get()
        if current_request is not None:
            fields.setdefault("request_id", current_request)
        for name, value in fields.items():
            if not isinstance(value, str):
                continue
            if self.mask_numbers and name in PHONE_FIELDS:
                value = mask_phone(value)
            elif self.mask_numbers and name in TEXT_FIELDS:
                value = mask_numbers_in(value)
            # `redact` can change only a value with a `:` or `=` (a header) or a `?` (a query
            # string); most values logged per webhook (ids, outcomes, names) have none.
            if "?" in value or ":" in value or "=" in value:
                value = redact(value)
            fields[name] = cap(value)
        return fields

    def format(self, record: logging.LogRecord) -> str:
        fields = self._fields(record)
        # Libraries' messages too (an SDK quoting a header, websockets' handshake lines).
        event = cap(redact(record.getMessage()))
        exception = (
            cap(redact(self.formatException(record.exc_info)), MAX_EXCEPTION_CHARS)
            if record.exc_info
            else None
        )
        if self.as_json:
            line: dict[str, Any] = {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": event,
                **fields,
            }
            if exception is not None:
                line["exception"] = exception
            return json.dumps(line, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        data = " ".join(f"{key}={value}" for key, value in fields.items())
        text = f"{stamp} {record.levelname:<7} {event} {data}".rstrip()
        if exception is not None:
            text += "\n" + exception
        return text


class HideQueryStrings(logging.Filter):
    """uvicorn logs each WebSocket handshake with its path and query string, and a media
    socket's query may carry a PBX's token and phone numbers: keep the path only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.split("?", 1)[0] if isinstance(arg, str) and arg.startswith("/") else arg
                for arg in record.args
            )
        return True


class SampleRefusals(logging.Filter):
    """Writes at most `per_second` lines a second for each kind of refusal (`*.refused`
    events). A client can send thousands of forged or oversized requests a second, and a line
    for each would fill the disk (about 1 MB/s from one loopback client); /metrics still counts
    every refusal. The next line written after a quiet-down carries how many were left out."""

    def __init__(
        self,
        per_second: int = REFUSAL_LINES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._per_second = per_second
        self._clock = clock
        self._windows: dict[str, tuple[int, int, int]] = {}  # event -> (second, written, left out)

    def filter(self, record: logging.LogRecord) -> bool:
        event = record.msg if isinstance(record.msg, str) else ""
        if not event.endswith(".refused"):
            return True
        second = int(self._clock())
        window, written, left_out = self._windows.get(event, (second, 0, 0))
        if window != second:
            window, written = second, 0
        if written >= self._per_second:
            self._windows[event] = (window, written, left_out + 1)
            return False
        self._windows[event] = (window, written + 1, 0)
        if left_out:
            fields = getattr(record, "fields", None)
            record.fields = {**(fields if isinstance(fields, dict) else {}), "left_out": left_out}
        return True


def configure_logging(level: str, *, mask_numbers: bool, as_json: bool | None = None) -> None:
    """Install the event formatter on the root logger (and uvicorn's, so all lines match)."""
    if as_json is None:
        as_json = not sys.stderr.isatty()
    # No line the service writes says where in the code, or in which thread or process, it was
    # logged: not working those out saves every line a walk up the stack and three look-ups
    # (the settings Python's logging documentation gives under "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(EventFormatter(as_json=as_json, mask_numbers=mask_numbers))
    handler.addFilter(SampleRefusals())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
        uvicorn_logger.filters[:] = [HideQueryStrings()]
    # One line per webhook comes from the bridge; uvicorn's access line would repeat it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The twilio SDK logs every REST request and response at INFO (URL, headers).
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
