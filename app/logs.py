"""Logging set-up: one line per event, JSON by default, readable in a terminal, phone numbers
masked unless LOG_PHONE_NUMBERS=full."""

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

# Event fields that hold phone numbers; the formatter masks them, so call sites never have to.
PHONE_FIELDS = frozenset({"from", "to", "caller", "called", "fallback_number"})

# The id of the HTTP request being served, set per request by `app.api.request_id`; every line
# logged while serving it carries the id, so one call's lines can be found together.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def mask_phone(number: str) -> str:
    """Keep enough of a number to tell calls apart, not enough to identify the person."""
    digits = sum(ch.isdigit() for ch in number)
    if digits <= 4:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


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
        if self.mask_numbers:
            for name in PHONE_FIELDS & fields.keys():
                if isinstance(fields[name], str):
                    fields[name] = mask_phone(fields[name])
        return fields

    def format(self, record: logging.LogRecord) -> str:
        fields = self._fields(record)
        if self.as_json:
            line: dict[str, Any] = {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "event": record.getMessage(),
                **fields,
            }
            if record.exc_info:
                line["exception"] = self.formatException(record.exc_info)
            return json.dumps(line, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        data = " ".join(f"{key}={value}" for key, value in fields.items())
        text = f"{stamp} {record.levelname:<7} {record.getMessage()} {data}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
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


def configure_logging(level: str, *, mask_numbers: bool, as_json: bool | None = None) -> None:
    """Install the event formatter on the root logger (and uvicorn's, so all lines match)."""
    if as_json is None:
        as_json = not sys.stderr.isatty()
    handler = logging.StreamHandler()
    handler.setFormatter(EventFormatter(as_json=as_json, mask_numbers=mask_numbers))
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
