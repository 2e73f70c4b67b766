"""The call webhooks are answered in front of the framework (app/api/webhooks.py): what that
path must keep of the framework's behaviour, and what it adds (the answer goes out before the
webhook's log line, metrics and call record are made)."""

import contextlib
import logging
from typing import Any

import httpx
import pytest
import respx
from starlette.requests import ClientDisconnect

from app import metrics
from app.api.webhooks import answer_response, send_answer
from app.calltypes import Answer
from app.main import create_app
from tests.conftest import (
    BASE_URL,
    JOIN_URL,
    created_call,
    make_settings,
    running_app,
    twilio_fields,
    twilio_webhook,
)


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/twilio/incoming", "/twilio/fallback", "/exotel/incoming/k"])
async def test_a_method_webhooks_are_not_sent_with_is_405_naming_the_allowed_ones(
    method: str, path: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(make_settings()) as client:
        response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    if method != "HEAD":
        assert response.text == "method not allowed\n"
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/twilio/incoming/", 404),  # an empty key is no key: the framework's 404
        ("/twilio/fallback/x", 404),
        ("//incoming", 404),
        ("/twilio/incoming/a/b", 404),
    ],
)
async def test_paths_that_only_look_like_webhooks_are_the_framework_s(
    path: str, status: int, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(make_settings()) as client:
        response = await client.post(path, content=b"CallSid=x")
    assert response.status_code == status
    assert route.call_count == 0


async def test_an_unknown_provider_is_404_as_plain_text(ultravox: respx.MockRouter) -> None:
    async with running_app(make_settings()) as client:
        response = await client.post("/acme/incoming", content=b"a=b")
    assert (response.status_code, response.text) == (404, "unknown provider 'acme'\n")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_a_key_in_the_path_of_a_provider_that_signs_is_404(
    ultravox: respx.MockRouter,
) -> None:
    webhook = twilio_webhook(twilio_fields(), path="/twilio/incoming/secret")
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert (response.status_code, response.text) == (
        404,
        "twilio webhooks take no key in their path\n",
    )


class _Events(logging.Handler):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.append(f"log {record.getMessage()}")


async def _served_directly(send_fails_at: str | None = None) -> list[str]:
    """What happens, in order, when the ASGI application is called with a signed webhook. With
    `send_fails_at`, the server's `send` raises `OSError` at that message, as an ASGI server
    does once the client has closed the connection."""
    app = create_app(make_settings())
    happened: list[str] = []
    handler = _Events(happened)
    logging.getLogger("app.bridge").addHandler(handler)
    webhook = twilio_webhook(twilio_fields())
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        assert not sent_body, "the body is read once"
        sent_body = True
        return {"type": "http.request", "body": webhook.content, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == send_fails_at:
            happened.append("client gone")
            raise OSError("the connection is closed")
        happened.append(message["type"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "server": ("bridge.test", 80),
        "client": ("127.0.0.1", 50000),
        "path": "/twilio/incoming",
        "raw_path": b"/twilio/incoming",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bridge.test"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"x-twilio-signature", webhook.headers["X-Twilio-Signature"].encode()),
            (b"content-length", str(len(webhook.content)).encode()),
        ],
    }
    try:
        async with app.router.lifespan_context(app):
            decided = app.state.bridge.lifecycle.decided
            app.state.bridge.lifecycle.decided = lambda decision: (
                happened.append("record"),
                decided(decision),
            )
            with contextlib.suppress(OSError, ClientDisconnect):  # the server's to log
                await app(scope, receive, send)
    finally:
        logging.getLogger("app.bridge").removeHandler(handler)
    return happened


async def test_the_answer_is_sent_before_the_log_line_and_the_call_record(
    ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.bridge")
    ultravox.post("/calls").mock(return_value=created_call())
    assert await _served_directly() == [
        "http.response.start",
        "http.response.body",
        "log webhook.answered",
        "record",
    ]


@pytest.mark.parametrize("send_fails_at", ["http.response.start", "http.response.body"])
async def test_a_call_answered_to_a_client_that_left_is_still_logged_and_recorded(
    send_fails_at: str, ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The Ultravox call was created: its log line, metrics and record must not depend on the
    provider still listening for the answer."""
    caplog.set_level(logging.INFO, logger="app.bridge")
    ultravox.post("/calls").mock(return_value=created_call())
    happened = await _served_directly(send_fails_at)
    assert "client gone" in happened
    assert "log webhook.answered" in happened
    assert "record" in happened


async def test_a_failure_outside_the_bridge_s_answers_is_a_plain_500_and_is_raised(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):

        def broken(request: object) -> None:
            raise RuntimeError("a bug in an adapter")

        app.state.bridge.adapters["twilio"].check = broken
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await twilio_webhook(twilio_fields()).send(client)
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert route.call_count == 0


async def test_the_answer_carries_the_request_id(ultravox: respx.MockRouter) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    webhook = twilio_webhook(twilio_fields())
    webhook.headers["X-Request-ID"] = "req-7"
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 200
    assert JOIN_URL.replace("&", "&amp;") in response.text
    assert response.headers["x-request-id"] == "req-7"


@pytest.mark.parametrize(
    "path",
    [
        "/bridge/twilio/incoming",  # uvicorn --root-path /bridge: the path keeps the prefix
        "/twilio/incoming",  # a proxy that strips the prefix before passing the request on
    ],
)
async def test_a_webhook_under_a_root_path_is_answered(
    path: str, ultravox: respx.MockRouter
) -> None:
    """As the framework's routes matched it: the root path (`uvicorn --root-path`) is not part
    of the route."""
    route = ultravox.post("/calls").mock(return_value=created_call())
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/bridge")
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            response = await twilio_webhook(twilio_fields(), path=path).send(client)
    assert response.status_code == 200
    assert JOIN_URL.replace("&", "&amp;") in response.text
    assert route.call_count == 1


async def test_many_refused_webhooks_add_no_metric_series(ultravox: respx.MockRouter) -> None:
    """Forged, unknown-provider and oversized webhooks by the thousand: each is refused, none
    creates a call, and the series the metrics keep stay the fixed set they were."""
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(make_settings()) as client:
        await twilio_webhook(twilio_fields(), token="wrong").send(client)  # the series it uses
        await client.post("/acme-0/incoming", content=b"a=b")
        await client.post("/twilio/incoming", content=b"a" * (64 * 1024 + 1))
        before = dict(metrics._SERIES)
        for number in range(1000):
            forged = twilio_webhook(twilio_fields(f"CA{number:032x}"), token="wrong")
            assert (await forged.send(client)).status_code == 403
            unknown = await client.post(f"/acme-{number}/incoming", content=b"a=b")
            assert unknown.status_code == 404
            huge = await client.post("/twilio/incoming", content=b"a" * (64 * 1024 + 1))
            assert huge.status_code == 413
    assert before == metrics._SERIES
    assert route.call_count == 0


@pytest.mark.parametrize(
    "answer",
    [
        Answer(b"<Response/>", "text/xml"),
        Answer(b"<Response/>", "application/xml"),
        Answer(b'{"a": 1}', "application/json", 503),
        Answer(b"", "text/plain; charset=utf-8"),
        Answer("<Say>é</Say>".encode(), "text/xml"),
    ],
)
async def test_an_answer_goes_out_as_the_framework_s_response_would_send_it(
    answer: Answer,
) -> None:
    sent: list[dict[str, Any]] = []
    framework: list[dict[str, Any]] = []

    async def nothing() -> dict[str, Any]:
        raise AssertionError("an answer reads nothing")

    async def into(messages: list[dict[str, Any]], message: dict[str, Any]) -> None:
        messages.append(message)

    await send_answer(answer, lambda message: into(sent, message))
    scope = {"type": "http", "method": "POST", "path": "/twilio/incoming"}
    await answer_response(answer)(scope, nothing, lambda message: into(framework, message))
    assert sent == framework
