"""What the logs must never carry, whatever a request holds: a line that grows with the
request, a credential from a DEBUG handshake line, or a caller's number quoted in an error."""

import base64
import logging
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import respx
import uvicorn
import websockets

from app.logs import MAX_LOGGED_CHARS, configure_logging
from app.main import create_app
from tests.conftest import (
    CALLER,
    Lines,
    capturing,
    make_settings,
    running_app,
    telnyx_fields,
    telnyx_webhook,
    twilio_fields,
    twilio_webhook,
)

# A line holds a few fields, each capped; far below the sizes a request can carry.
MAX_LINE_CHARS = 6 * MAX_LOGGED_CHARS
ASTERISK_TOKEN = "asterisk-test-token-0123456789"


@pytest.fixture
def all_logs() -> Iterator[Lines]:
    """Every logger's lines (the SDKs' too), formatted as in production, at INFO."""
    with capturing(logging.getLogger()) as lines:
        yield lines


async def test_a_huge_header_is_refused_before_anything_logs_it(all_logs: Lines) -> None:
    huge = "x" * (1024 * 1024)
    webhook = twilio_webhook(twilio_fields())
    webhook.headers["X-Twilio-Webhooks-Signature-Settings"] = huge
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)

    assert (response.status_code, response.text) == (431, "request headers over 16384 bytes\n")
    assert huge not in all_logs.text


async def test_an_unknown_signature_algorithm_is_refused_quoted_capped(all_logs: Lines) -> None:
    # Under the header limit, a 12,000-character algorithm name reaches the signature check.
    unknown = "algorithm=" + "A" * 12000
    webhook = twilio_webhook(twilio_fields())
    webhook.headers["X-Twilio-Webhooks-Signature-Settings"] = unknown
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)

    assert response.status_code == 403
    assert "A" * 41 not in response.text
    assert "A" * 41 not in all_logs.text
    assert all(len(line) < MAX_LINE_CHARS for line in all_logs.lines)


async def test_a_huge_call_id_is_logged_capped(all_logs: Lines) -> None:
    call_id = "v3:" + "c" * 60_000
    async with running_app(make_settings(ultravox_api_url="http://127.0.0.1:9/api")) as client:
        await telnyx_webhook(telnyx_fields(call_id), method="POST").send(client)

    assert all_logs.lines
    assert all(len(line) < MAX_LINE_CHARS for line in all_logs.lines)
    assert call_id not in all_logs.text


async def test_fallback_reason_quoting_ultravox_masks_the_callers_number(
    ultravox: respx.MockRouter, all_logs: Lines
) -> None:
    ultravox.post("/calls").mock(
        return_value=httpx.Response(400, json={"detail": f"metadata.callerNumber {CALLER} refused"})
    )
    async with running_app(make_settings()) as client:
        await twilio_webhook(twilio_fields()).send(client)

    (fallback,) = all_logs.named("webhook.fallback")
    assert fallback["reason"] == (
        'Ultravox answered 400: {"detail":"metadata.callerNumber +15*******06 refused"}'
    )
    assert CALLER not in all_logs.text


@pytest.fixture
def served_app() -> Iterator[str]:
    """The app on a free loopback port, served by uvicorn as in production."""
    settings = make_settings(asterisk_token=ASTERISK_TOKEN)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def test_debug_handshake_lines_hide_credentials_and_tokens(
    served_app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG", mask_numbers=True, as_json=True)
    basic = base64.b64encode(f"asterisk:{ASTERISK_TOKEN}".encode()).decode()
    try:
        # The PBX's Basic credential (server side) and a token in a URL (client side).
        async with websockets.connect(
            f"ws://{served_app}/asterisk/media?token=query-token-0123456789",
            additional_headers={"Authorization": f"Basic {basic}"},
            subprotocols=[websockets.Subprotocol("media")],
        ) as socket_:
            await socket_.close()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    logged = capsys.readouterr().err

    assert "Authorization: Basic ***" in logged  # the lines were written, masked
    assert "/asterisk/media?***" in logged
    assert basic not in logged
    assert ASTERISK_TOKEN not in logged
    assert "query-token-0123456789" not in logged


def test_the_twilio_sdk_request_lines_are_silenced() -> None:
    """The twilio SDK logs each REST request and response (URL, headers) at INFO."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", mask_numbers=True, as_json=True)
        sdk = logging.getLogger("twilio.http_client")
        assert not sdk.isEnabledFor(logging.INFO)
        assert sdk.isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("twilio.http_client").setLevel(logging.NOTSET)
