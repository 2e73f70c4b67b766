"""`ultravox-bridge simulate` against the app in-process: each verdict, with its exit status."""

import asyncio
import base64
import io
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import respx
import uvicorn

from app.calltypes import FallbackPlan
from app.cli import main
from app.config import Settings
from app.main import create_app
from app.providers import SIMULATORS
from app.providers.plivo.simulator import PlivoSimulator
from app.providers.telnyx.simulator import TelnyxSimulator
from app.routing import RejectTarget, Route, RoutingTable
from app.simulate.render import render
from app.simulate.send import Simulation, simulate
from app.simulate.settings import SimulatorSettings
from tests.conftest import (
    BASE_URL,
    CALLED,
    CALLER,
    JOIN_URL,
    PLIVO_TOKEN,
    TELNYX_KEY,
    TWILIO_TOKEN,
    make_settings,
    running_app,
)

TELNYX_PRIVATE_KEY = base64.b64encode(bytes(TELNYX_KEY)).decode()
SECRETS = {"twilio": TWILIO_TOKEN, "telnyx": TELNYX_PRIVATE_KEY, "plivo": PLIVO_TOKEN}
WRONG_SECRETS = {
    "twilio": "wrong-token",
    "telnyx": base64.b64encode(b"\x07" * 32).decode(),
    "plivo": "wrong-token",
}
PROVIDERS = ["twilio", "telnyx", "plivo"]
METHODS = ["POST", "GET"]


@pytest.fixture
async def app_transport() -> AsyncIterator[httpx.ASGITransport]:
    async with running_app(make_settings(telnyx_allow_get=True)) as client:
        yield httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]


async def run(
    transport: httpx.AsyncBaseTransport | None,
    name: str,
    method: str = "POST",
    url: str | None = None,
    secret: str | None = None,
    wait_seconds: float = 15,
) -> Simulation:
    simulator = SIMULATORS[name](secret or SECRETS[name])
    return await simulate(
        simulator,
        url or f"{BASE_URL}/{name}/incoming",
        method=method,  # type: ignore[arg-type]
        wait_seconds=wait_seconds,
        transport=transport,
        progress=io.StringIO(),
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", PROVIDERS)
async def test_stream_answer_is_the_only_success(
    name: str, method: str, app_transport: httpx.ASGITransport, ultravox: respx.MockRouter
) -> None:
    created = ultravox.post("/calls").respond(201, json={"callId": "c-1", "joinUrl": JOIN_URL})

    simulation = await run(app_transport, name, method)

    assert simulation.status_code == 200
    assert simulation.verdict.name == "stream"
    assert simulation.verdict.exit_status == 0
    assert simulation.verdict.stream_url == JOIN_URL
    assert created.call_count == 1
    metadata = json.loads(created.calls.last.request.content)["metadata"]
    assert metadata == {
        "provider": name,
        "providerCallId": simulation.webhook.call_id,
        "callerNumber": CALLER,
        "calledNumber": CALLED,
    }


@pytest.mark.parametrize("ultravox_status", [500, 400])
@pytest.mark.parametrize("name", PROVIDERS)
async def test_fallback_when_ultravox_cannot_create_the_call(
    name: str, ultravox_status: int, app_transport: httpx.ASGITransport, ultravox: respx.MockRouter
) -> None:
    ultravox.post("/calls").respond(ultravox_status, json={"detail": "no"})

    simulation = await run(app_transport, name)

    assert simulation.status_code == 200
    assert simulation.verdict.name == "fallback"
    assert simulation.verdict.exit_status == 1
    assert "Ultravox could not create the call: check ULTRAVOX_API_KEY, the agent id" in (
        simulation.verdict.explanation
    )
    assert "then hangs up" in simulation.verdict.explanation


@pytest.mark.parametrize(
    "route",
    [None, Route("closed", RejectTarget(), FallbackPlan("bye"))],
    ids=["no-route", "reject-route"],
)
@pytest.mark.parametrize("name", PROVIDERS)
async def test_reject_when_no_route_takes_the_number(
    name: str, route: Route | None, ultravox: respx.MockRouter
) -> None:
    created = ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": JOIN_URL})
    async with running_app(make_settings()) as client:
        client.app.state.bridge.routing = RoutingTable(default=route)  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
        simulation = await run(transport, name)

    assert simulation.verdict.name == "reject"
    assert simulation.verdict.exit_status == 1
    assert "the service has no route for the called number" in simulation.verdict.explanation
    assert created.call_count == 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", PROVIDERS)
async def test_wrong_secret_is_forbidden_and_explained(
    name: str, method: str, app_transport: httpx.ASGITransport, ultravox: respx.MockRouter
) -> None:
    created = ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": JOIN_URL})

    simulation = await run(app_transport, name, method, secret=WRONG_SECRETS[name])

    assert simulation.status_code == 403
    assert simulation.verdict.name == "forbidden"
    assert simulation.verdict.exit_status == 1
    assert created.call_count == 0
    explanation = simulation.verdict.explanation
    if name == "telnyx":
        assert "TELNYX_PUBLIC_KEY does not include the public key" in explanation
    else:
        setting = f"{name.upper()}_AUTH_TOKEN"
        assert f"the service's {setting} is not the {setting} signing here" in explanation
        assert "set PUBLIC_BASE_URL" in explanation


@pytest.mark.parametrize("name", ["twilio", "plivo"])
async def test_url_mismatch_behind_a_proxy_is_forbidden_and_names_the_signed_url(
    name: str, ultravox: respx.MockRouter
) -> None:
    """The service believes it is https://bridge.example.com; the URL signed is another."""
    async with running_app(make_settings(public_base_url="https://bridge.example.com")) as client:
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
        simulation = await run(transport, name)

    assert simulation.verdict.name == "forbidden"
    assert f"which is exactly {BASE_URL}/{name}/incoming." in simulation.verdict.explanation


async def test_provider_without_secret_is_unavailable(ultravox: respx.MockRouter) -> None:
    async with running_app(make_settings(plivo_auth_token="")) as client:
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
        simulation = await run(transport, "plivo")

    assert simulation.status_code == 503
    assert simulation.verdict.name == "unavailable"
    assert "no plivo secret is configured" in simulation.verdict.explanation
    assert "set PLIVO_AUTH_TOKEN on the service" in simulation.verdict.explanation


async def test_wrong_path_is_not_found(app_transport: httpx.ASGITransport) -> None:
    simulation = await run(app_transport, "twilio", url=f"{BASE_URL}/acme/incoming")

    assert simulation.verdict.name == "not-found"
    assert "/twilio/incoming" in simulation.verdict.explanation


@pytest.mark.parametrize("name", PROVIDERS)
async def test_closed_port_is_unreachable(name: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}/{name}/incoming"

    simulation = await run(None, name, url=url)

    assert simulation.status_code is None
    assert simulation.verdict.name == "unreachable"
    assert simulation.verdict.exit_status == 1
    assert simulation.verdict.explanation.startswith(
        f"could not connect to {url.removesuffix(f'/{name}/incoming')} (ConnectError"
    )


async def test_no_answer_in_time_is_a_timeout() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("stalled", request=request)

    simulation = await run(httpx.MockTransport(stall), "twilio")

    assert simulation.verdict.name == "timeout"
    assert simulation.verdict.explanation.startswith("no answer within 15 s.")


async def test_slow_answer_is_cut_off_at_the_limit() -> None:
    """httpx bounds each read; the whole exchange must be bounded too."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    simulation = await run(httpx.MockTransport(slow), "plivo", wait_seconds=0.2)

    assert simulation.verdict.name == "timeout"
    assert simulation.verdict.explanation.startswith("no answer within 0.2 s.")


async def test_connect_timeout_is_unreachable_not_slow() -> None:
    def no_connection(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("connect timed out", request=request)

    simulation = await run(httpx.MockTransport(no_connection), "twilio")

    assert simulation.verdict.name == "unreachable"
    assert "could not connect to http://bridge.test (ConnectTimeout" in (
        simulation.verdict.explanation
    )


async def test_connection_dropped_mid_answer_is_explained() -> None:
    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    simulation = await run(httpx.MockTransport(dropped), "twilio")

    assert simulation.verdict.name == "unreachable"
    assert simulation.verdict.explanation.startswith(
        "the connection to bridge.test broke before a whole answer came back"
    )


async def test_huge_answer_is_not_read_whole() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 300_000))

    simulation = await run(transport, "twilio")

    assert simulation.verdict.name == "unexpected"
    assert simulation.verdict.explanation == "the answer is over 256 KiB: no provider takes it"
    assert simulation.body == ""


@pytest.mark.parametrize(
    ("status", "headers", "verdict", "explained"),
    [
        (400, {}, "bad-request", "the service found the webhook malformed (missing field(s): To)."),
        (413, {}, "too-large", "the bridge accepts up to 64 KiB"),
        (
            302,
            {"location": "https://bridge.test/t"},
            "redirect",
            "redirects to https://bridge.test/t",
        ),
        (502, {}, "unexpected", "the service answered HTTP 502: missing field(s): To"),
    ],
)
async def test_other_statuses_are_explained(
    status: int, headers: dict[str, str], verdict: str, explained: str
) -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(status, headers=headers, text="missing field(s): To\n")
    )

    simulation = await run(transport, "twilio")

    assert simulation.status_code == status
    assert simulation.verdict.name == verdict
    assert simulation.verdict.exit_status == 1
    assert explained in simulation.verdict.explanation


async def test_request_names_itself_in_access_logs() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404)

    await run(httpx.MockTransport(record), "plivo")

    assert seen[0].headers["user-agent"] == "ultravox-bridge-simulate"


async def test_answer_that_is_not_xml_is_unexpected() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="OK"))

    simulation = await run(transport, "telnyx", "GET")

    assert simulation.verdict.name == "unexpected"
    assert simulation.verdict.explanation.startswith("the answer is not XML")


async def test_progress_line_and_report(
    app_transport: httpx.ASGITransport, ultravox: respx.MockRouter
) -> None:
    ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": "wss://u.test/j"})
    progress = io.StringIO()
    url = f"{BASE_URL}/twilio/incoming"
    simulation = await simulate(
        SIMULATORS["twilio"](TWILIO_TOKEN),
        url,
        method="POST",
        transport=app_transport,
        progress=progress,
    )

    call_id = simulation.webhook.call_id
    assert progress.getvalue() == (
        f"Twilio POST {call_id} -> {url}: waiting up to 15 s for the answer\n"
    )
    report = render(simulation).splitlines()
    assert report[0] == f"request:  POST {url}"
    assert report[1] == f"call:     {CALLER} -> {CALLED}, call id {call_id}"
    assert report[2].startswith("status:   HTTP 200 text/xml; charset=utf-8 in ")
    assert report[3:5] == [
        "answer:",
        '  <?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        '<Stream url="wss://u.test/j" /></Connect></Response>',
    ]
    assert report[5].startswith("verdict:  stream: <Connect><Stream> to the Ultravox call: ")


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No secrets from the developer's environment or .env."""
    monkeypatch.chdir(tmp_path)
    for name in ("TWILIO_AUTH_TOKEN", "PLIVO_AUTH_TOKEN", "TELNYX_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_command_reads_the_secret_from_the_environment(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("TELNYX_PRIVATE_KEY", TELNYX_PRIVATE_KEY)
    url = f"http://127.0.0.1:{closed_port()}/telnyx/incoming"

    status = main(["simulate", "telnyx", "--url", url, "--timeout", "2"])

    out, err = capsys.readouterr()
    assert status == 1
    assert out.splitlines()[0] == f"request:  POST {url}"
    assert "verdict:  unreachable: could not connect to" in out
    assert ": waiting up to 2 s for the answer" in err


def test_command_without_a_secret_names_the_setting(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["simulate", "twilio", "--url", "http://127.0.0.1:9/twilio/incoming"])

    assert status == 2
    assert capsys.readouterr().err == (
        "simulate: no TWILIO_AUTH_TOKEN: set it in the environment or .env, or pass --secret\n"
    )


def test_first_token_of_a_rotation_list_signs(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PLIVO_AUTH_TOKEN", f" {PLIVO_TOKEN} ,older-token")

    assert PlivoSimulator.secret_from(SimulatorSettings()) == PLIVO_TOKEN


def test_command_refuses_a_url_that_is_not_http(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["simulate", "plivo", "--url", "bridge.example.com/plivo", "--secret", "x"])

    assert status == 2
    assert "--url must be an http(s) URL" in capsys.readouterr().err


def test_command_makes_a_telnyx_key_pair(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "telnyx", "--make-key-pair"]) == 0

    private_line, public_line = capsys.readouterr().out.splitlines()
    private_key = private_line.removeprefix("TELNYX_PRIVATE_KEY=")
    public_key = public_line.removeprefix("TELNYX_PUBLIC_KEY=")
    assert TelnyxSimulator(private_key).public_key == public_key


def test_command_has_no_key_pair_for_twilio(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "twilio", "--make-key-pair"]) == 2
    assert "there is no key pair to make" in capsys.readouterr().err


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The service on a loopback port in a thread, as `ultravox-bridge serve` runs it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.mark.parametrize("name", PROVIDERS)
def test_command_against_a_served_app_exits_0_on_a_stream(
    name: str,
    clean_env: pytest.MonkeyPatch,
    ultravox: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": "wss://u.test/j"})
    ultravox.route(host="127.0.0.1").pass_through()
    clean_env.setenv(SIMULATORS[name].secret_setting, SECRETS[name])

    with serving(make_settings()) as origin:
        status = main(["simulate", name, "--url", f"{origin}/{name}/incoming"])

    out = capsys.readouterr().out
    assert status == 0, out
    assert "status:   HTTP 200" in out
    assert "verdict:  stream: " in out
