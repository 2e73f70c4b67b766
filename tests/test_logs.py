"""Log lines: one JSON object per event, carrying the request id and the call's identifiers,
with phone numbers masked."""

import logging
import random
from typing import Any

import httpx
import pytest
import respx

from app.logs import SampleRefusals, configure_logging, redact
from tests.conftest import (
    CALL_ID,
    CALLED,
    CALLER,
    Lines,
    created_call,
    make_settings,
    running_app,
    twilio_fields,
    twilio_webhook,
)


async def test_webhook_line_carries_request_and_call_fields(
    ultravox: respx.MockRouter, log_lines: Lines
) -> None:
    ultravox.post("/calls").mock(side_effect=[httpx.Response(503), created_call()])
    async with running_app(make_settings()) as client:
        webhook = twilio_webhook(twilio_fields())
        webhook.headers["X-Request-ID"] = "req-0042"
        response = await webhook.send(client)

    assert response.headers["x-request-id"] == "req-0042"
    line = log_lines.event("webhook.answered")
    latency = line.pop("latency_ms")
    line.pop("ts")
    assert isinstance(latency, float)
    assert latency > 0
    assert line == {
        "level": "info",
        "logger": "app.bridge",
        "event": "webhook.answered",
        "request_id": "req-0042",
        "provider": "twilio",
        "method": "POST",
        "call_id": "CA0123456789abcdef0123456789abcdef",
        "from": "+15*******06",
        "to": "+15*******01",
        "outcome": "answered",
        "route": "default",
        "ultravox_call_id": CALL_ID,
    }
    assert log_lines.event("ultravox.retry")["request_id"] == "req-0042"
    assert CALLER not in log_lines.text
    assert CALLED not in log_lines.text


async def test_request_without_id_gets_a_new_one(log_lines: Lines) -> None:
    async with running_app(make_settings()) as client:
        forged = twilio_webhook(twilio_fields(), token="forged")
        first = await forged.send(client)
        second = await forged.send(client)

    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0] != ids[1]
    refused = [line for line in log_lines.events() if line["event"] == "webhook.refused"]
    assert [line["request_id"] for line in refused] == ids
    assert [line["outcome"] for line in refused] == ["forbidden", "forbidden"]


async def test_unsafe_request_id_is_replaced() -> None:
    async with running_app(make_settings()) as client:
        response = await client.get("/healthz", headers={"X-Request-ID": 'bad id"\\'})

    assert response.headers["x-request-id"] != 'bad id"\\'
    assert len(response.headers["x-request-id"]) == 32


def test_uvicorn_handshake_lines_lose_their_query_string() -> None:
    from app.logs import HideQueryStrings

    uvicorn_logger = logging.getLogger("uvicorn.error")
    # What uvicorn's WebSocket protocol logs for each handshake.
    record = uvicorn_logger.makeRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/asterisk/media?from=%2B15005550006&token=a-secret-token-0123456789"),
        None,
    )
    assert HideQueryStrings().filter(record) is True
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /asterisk/media" [accepted]'


def test_configure_logging_puts_the_filter_on_uvicorn_s_loggers() -> None:
    from app.logs import HideQueryStrings, configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", mask_numbers=True, as_json=True)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            [installed] = logging.getLogger(name).filters
            assert isinstance(installed, HideQueryStrings)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).filters[:] = []


def test_refusal_lines_are_sampled_and_the_next_line_says_how_many_were_left_out() -> None:
    now = [100.0]
    sampler = SampleRefusals(per_second=3, clock=lambda: now[0])

    def refusal(event: str = "webhook.refused") -> logging.LogRecord:
        record = logging.LogRecord("app.bridge", logging.WARNING, __file__, 1, event, None, None)
        record.fields = {"provider": "twilio", "outcome": "too_large"}
        return record

    written = [sampler.filter(refusal()) for _ in range(10)]
    assert written == [True, True, True] + [False] * 7
    # Another kind of refusal and any other event have their own allowance.
    assert sampler.filter(refusal("media.refused"))
    assert sampler.filter(refusal("webhook.answered"))

    now[0] += 1.0
    record = refusal()
    assert sampler.filter(record)
    assert record.fields == {"provider": "twilio", "outcome": "too_large", "left_out": 7}
    follow_up = refusal()
    assert sampler.filter(follow_up)
    assert follow_up.fields == {"provider": "twilio", "outcome": "too_large"}


def test_the_service_log_handler_samples_refusals() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", mask_numbers=True, as_json=True)
        (handler,) = root.handlers
        assert [type(f) for f in handler.filters] == [SampleRefusals]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).filters[:] = []


def test_service_log_lines_skip_the_caller_thread_and_process_look_ups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # put back afterwards
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    records: list[logging.LogRecord] = []
    try:
        configure_logging("INFO", mask_numbers=True, as_json=True)
        (handler,) = root.handlers
        handler.emit = records.append  # type: ignore[assignment,method-assign]
        logging.getLogger("app.bridge").info("webhook.answered")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).filters[:] = []
    (record,) = records
    assert (record.funcName, record.lineno, record.pathname) == (
        "(unknown function)",
        0,
        "(unknown file)",
    )
    assert (record.thread, record.process, record.processName) == (None, None, None)


def test_values_the_formatter_does_not_redact_are_those_redact_leaves_alone() -> None:
    """The formatter skips `redact` for a value without `:`, `=` or `?`: for any such value,
    `redact` must change nothing, whatever secret-looking words it holds."""
    rng = random.Random(20261202)
    words = ["authorization", "X-API-Key", "cookie", "bearer", "https", "//host/path", "a", " "]
    alphabet = "aZ0 /.-_;,'\"\t"
    for _ in range(3000):
        parts = rng.choices(words, k=rng.randint(0, 6)) + rng.choices(alphabet, k=5)
        rng.shuffle(parts)
        value = "".join(parts)
        assert redact(value) == value, value


async def test_the_request_id_replaces_one_the_application_set() -> None:
    from app.api.request_id import RequestIdMiddleware

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"X-Request-ID", b"inner")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"x-request-id", b"req-9")]}
    await RequestIdMiddleware(app)(scope, None, send)  # type: ignore[arg-type]
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"), (b"x-request-id", b"req-9")]
