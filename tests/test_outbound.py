"""The outbound call's definition (route, agent override, body) and its settings, without HTTP;
and the promise that inbound-only start-up never loads a dialing SDK."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from app.calltypes import FallbackPlan, InboundCall
from app.config import Settings, load_settings
from app.outbound.body import outbound_call_body
from app.outbound.errors import InvalidOutboundRequest, RouteRefusesCalls
from app.outbound.flow import OutboundCalls
from app.outbound.request import OutboundCallRequest
from app.outbound.target import outbound_target
from app.providers.dialing import Dialed, Dialer, OutboundCall
from app.routing import AgentTarget, InlineTarget, RejectTarget, Route, RoutingTable
from app.routing.table import Rule
from app.settings import ConfigError
from tests.conftest import AGENT_ID, make_settings

OUR_NUMBER = "+15005550001"
CALLEE = "+15005550006"
CALL = InboundCall("twilio", "outbound-1", CALLEE, OUR_NUMBER)
FALLBACK = FallbackPlan("Sorry.")


def request(**fields: Any) -> OutboundCallRequest:
    return OutboundCallRequest.model_validate({"provider": "twilio", "to": CALLEE, **fields})


def table(target: AgentTarget | InlineTarget | RejectTarget) -> RoutingTable:
    return RoutingTable(default=Route("default", target, FALLBACK))


def test_the_route_for_our_number_is_used() -> None:
    target = InlineTarget({"systemPrompt": "Remind them of the appointment."})
    assert outbound_target(table(target), CALL, request()) is target


def test_a_route_set_to_reject_refuses_outbound_calls_too() -> None:
    with pytest.raises(RouteRefusesCalls, match=r"the route for \+15005550001"):
        outbound_target(table(RejectTarget()), CALL, request())


def test_no_route_is_a_clear_refusal() -> None:
    with pytest.raises(InvalidOutboundRequest, match=r"no route for the caller number"):
        outbound_target(RoutingTable(default=None), CALL, request())


def test_a_named_route_is_used() -> None:
    target = AgentTarget("agent-default")
    assert outbound_target(table(target), CALL, request(route="default")) == target


def test_a_named_route_of_the_routes_file_is_used_whatever_our_number() -> None:
    sales = AgentTarget("agent-sales")
    routing = RoutingTable(
        default=Route("default", AgentTarget("agent-default"), FALLBACK),
        rules=[Rule(("+15005550009",), Route("sales", sales, FALLBACK))],
    )
    assert outbound_target(routing, CALL, request(route="sales")) is sales


def test_an_unknown_route_name_is_a_clear_refusal() -> None:
    with pytest.raises(InvalidOutboundRequest, match="no route named 'sales'"):
        outbound_target(table(AgentTarget("a")), CALL, request(route="sales"))


def test_agent_override_keeps_only_the_fields_an_agent_call_accepts() -> None:
    route = InlineTarget({"systemPrompt": "p", "temperature": 0.2, "maxDuration": "300s"})
    chosen = outbound_target(table(route), CALL, request(agentId=AGENT_ID))
    assert chosen == AgentTarget(AGENT_ID, call_fields={"maxDuration": "300s"})


def test_agent_override_works_where_the_route_rejects() -> None:
    chosen = outbound_target(table(RejectTarget()), CALL, request(agentId=AGENT_ID))
    assert chosen == AgentTarget(AGENT_ID)


def test_request_template_context_overrides_the_route_s() -> None:
    route = AgentTarget("a", template_context={"greeting": "Hi", "team": "sales"})
    chosen = outbound_target(table(route), CALL, request(templateContext={"greeting": "Hello"}))
    assert chosen == AgentTarget("a", template_context={"greeting": "Hello", "team": "sales"})


def test_body_lets_the_callee_speak_first_and_waits_for_ringing() -> None:
    target = InlineTarget(
        {"systemPrompt": "p", "firstSpeakerSettings": {"agent": {}}, "metadata": {"team": "x"}}
    )
    settings = make_settings(outbound_join_timeout="75s", outbound_ring_timeout_seconds=60)
    body = outbound_call_body(target, CALL, {"twilio": {}}, settings, {"campaign": "c"})
    assert body == {
        "firstSpeakerSettings": {"user": {}},
        "systemPrompt": "p",
        "metadata": {
            "campaign": "c",
            "team": "x",
            "provider": "twilio",
            "callerNumber": CALLEE,
            "calledNumber": OUR_NUMBER,
            "direction": "outbound",
        },
        "medium": {"twilio": {}},
        "joinTimeout": "75s",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"outbound_join_timeout": "1 minute"}, "OUTBOUND_JOIN_TIMEOUT: must be a duration"),
        (
            {"outbound_join_timeout": "50s"},
            "OUTBOUND_JOIN_TIMEOUT (50s) must exceed OUTBOUND_RING_TIMEOUT_SECONDS (45)",
        ),
        ({"twilio_account_sid": "SK123"}, "TWILIO_ACCOUNT_SID: must be AC followed by 32"),
        ({"plivo_auth_id": "XX0123456789ABCDEFGH"}, "PLIVO_AUTH_ID: must be MA or SA"),
        ({"telnyx_from_number": "15005550001"}, "TELNYX_FROM_NUMBER: must be your number in"),
    ],
)
def test_invalid_outbound_settings_are_named(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, ultravox_api_key="k", **overrides)
    assert message in str(caught.value)


def test_short_api_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_API_TOKENS: each token must be at least 16"):
        load_settings(_env_file=None, ultravox_api_key="k", bridge_api_tokens="secret")


def test_api_tokens_are_comma_separated() -> None:
    settings = make_settings(
        bridge_api_tokens=" first-token-0123456789 , second-token-0123456789 ,"
    )
    assert [token.get_secret_value() for token in settings.bridge_api_tokens] == [
        "first-token-0123456789",
        "second-token-0123456789",
    ]


START_UP = r"""
import asyncio, json, sys
from app.main import create_app
from app.config import Settings

values = json.loads(sys.argv[1])
app = create_app(Settings(_env_file=None, ultravox_api_key="k", **values))

async def start() -> None:
    async with app.router.lifespan_context(app):
        print(json.dumps({
            "outbound": app.state.outbound is not None,
            "telnyx": "telnyx" in sys.modules,
            "twilio.rest": "twilio.rest" in sys.modules,
            "plivo": "plivo" in sys.modules,
            "redis": "redis" in sys.modules,
        }))

asyncio.run(start())
"""


def started(values: dict[str, str]) -> dict[str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", START_UP, json.dumps(values)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=60,
        check=True,
    )
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_inbound_only_start_up_loads_no_dialing_sdk() -> None:
    assert started({"twilio_account_sid": "AC" + "0" * 32, "telnyx_api_key": "KEY"}) == {
        "outbound": False,
        "telnyx": False,
        "twilio.rest": False,
        "plivo": False,
        "redis": False,
    }


def test_the_plivo_sdk_and_redis_client_load_only_when_used() -> None:
    # The plivo SDK (XML builders, signature check) costs about 11 MiB and the Redis client 6 MiB.
    values = {"plivo_auth_token": "t", "redis_url": "redis://127.0.0.1:1/0"}
    assert started(values) == {
        "outbound": False,
        "telnyx": False,
        "twilio.rest": False,
        "plivo": True,
        "redis": True,
    }


def test_outbound_start_up_loads_the_configured_providers_sdks() -> None:
    values = {
        "bridge_api_tokens": "outbound-token-0123456789",
        "telnyx_api_key": "KEY",
        "telnyx_connection_id": "1",
        "twilio_auth_token": "t",
        "twilio_account_sid": "AC" + "0" * 32,
    }
    assert started(values) == {
        "outbound": True,
        "telnyx": True,
        "twilio.rest": True,
        "plivo": False,
        "redis": False,
    }


class ClosingDialer(Dialer):
    """A dialer that needs no settings and remembers whether it was closed."""

    name = "closing"

    def __init__(self, settings: Settings, executor: Any) -> None:
        super().__init__(settings, executor)
        self.closed = False

    @staticmethod
    def missing_settings(settings: Settings) -> list[str]:
        return []

    @staticmethod
    def default_from(settings: Settings) -> str | None:
        return OUR_NUMBER

    async def dial(self, call: OutboundCall) -> Dialed:
        return Dialed("dialled-1")

    async def aclose(self) -> None:
        self.closed = True


async def test_closing_the_outbound_service_closes_its_dialers_and_threads() -> None:
    outbound = OutboundCalls(make_settings(), (ClosingDialer,))
    dialer = outbound.dialers["closing"]
    assert isinstance(dialer, ClosingDialer)
    dial_thread = await dialer.run_blocking(threading.current_thread)
    assert dial_thread is not threading.current_thread()

    await outbound.aclose()

    assert dialer.closed
    dial_thread.join(timeout=5)
    assert not dial_thread.is_alive()
    with pytest.raises(RuntimeError, match="after shutdown"):
        await dialer.run_blocking(threading.current_thread)
