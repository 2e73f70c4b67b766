"""`ultravox-bridge call` as a user runs it: a separate process talking to the service served by
uvicorn on 127.0.0.1, whose Ultravox and Telnyx APIs are mocked with respx."""

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx
import uvicorn

from app.main import create_app
from tests.outbound_mocks import (
    API_TOKEN,
    CALLEE,
    OUR_NUMBER,
    TELNYX_CALL_CONTROL_ID,
    TELNYX_CALLS_URL,
    UV_CALL_ID,
    expected_ultravox_body,
    outbound_settings,
    telnyx_accepts,
    ultravox_created,
    ultravox_deleted,
)

COMMAND_TIMEOUT_SECONDS = 60


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def service_url(apis: respx.MockRouter) -> Iterator[str]:
    """The app served over HTTP on a free loopback port, in a thread, for this test only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(outbound_settings()), log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "the service did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def run_call_command(
    *args: str, token: str | None = API_TOKEN, cwd: Path
) -> subprocess.CompletedProcess[str]:
    # A clean environment and directory: no stray .env or BRIDGE_API_TOKEN from the machine.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(Path(__file__).parents[1])}
    if token is not None:
        env["BRIDGE_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "call", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def test_call_command_places_a_call(
    apis: respx.MockRouter, service_url: str, tmp_path: Path
) -> None:
    created = ultravox_created(apis)
    dial = telnyx_accepts(apis)

    result = run_call_command(
        "--provider", "telnyx", "--to", CALLEE, "--url", service_url, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ultravoxCallId": UV_CALL_ID,
        "providerCallId": TELNYX_CALL_CONTROL_ID,
        "state": "dialing",
        "provider": "telnyx",
        "to": CALLEE,
        "from": OUR_NUMBER,
    }
    assert json.loads(created.calls.last.request.content) == expected_ultravox_body("telnyx")
    assert json.loads(dial.calls.last.request.content)["to"] == CALLEE


def test_call_command_reports_a_refusal_and_exits_non_zero(
    apis: respx.MockRouter, service_url: str, tmp_path: Path
) -> None:
    ultravox_created(apis)
    ultravox_deleted(apis)
    apis.post(TELNYX_CALLS_URL).respond(
        403, json={"errors": [{"title": "Forbidden", "detail": "Your account has no credit."}]}
    )

    result = run_call_command(
        "--provider", "telnyx", "--to", CALLEE, "--url", service_url, cwd=tmp_path
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: the service answered 502\n")
    assert json.loads(result.stderr.split("\n", 1)[1]) == {
        "detail": "telnyx refused the call: Your account has no credit.",
        "ultravoxCallId": UV_CALL_ID,
        "ultravoxCallEnded": True,
        "providerStatus": 403,
    }


def test_call_command_with_a_wrong_token_exits_non_zero(
    apis: respx.MockRouter, service_url: str, tmp_path: Path
) -> None:
    result = run_call_command(
        "--provider",
        "telnyx",
        "--to",
        CALLEE,
        "--url",
        service_url,
        "--token",
        "nope",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "error: the service answered 401" in result.stderr
    assert not apis.calls


def test_call_command_without_a_token_says_how_to_give_one(tmp_path: Path) -> None:
    result = run_call_command("--provider", "twilio", "--to", CALLEE, token=None, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: give --token or set BRIDGE_API_TOKEN\n"


def test_call_command_without_a_service_says_so(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    result = run_call_command(
        "--provider",
        "twilio",
        "--to",
        CALLEE,
        "--url",
        f"http://127.0.0.1:{closed_port}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: cannot reach the service at http://127.0.0.1:{closed_port}/calls"
    )
