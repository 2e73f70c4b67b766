"""Which route a call gets: called number in any provider's format, provider filter, caller
prefix, first match, default, no match."""

import logging

import pytest

from app.calltypes import FallbackPlan, InboundCall
from app.phone import to_e164
from app.routing import (
    AgentTarget,
    InlineTarget,
    RejectTarget,
    Route,
    RoutingTable,
    table_from_settings,
    unused_settings,
)
from app.routing.placeholders import compile_value
from app.settings import DEFAULT_FALLBACK_MESSAGE, DEFAULT_SYSTEM_PROMPT
from tests.conftest import make_settings, running_app
from tests.routing.conftest import RoutesFile

CALLER = "+15005550006"

TABLE = """
    routes:
      - name: sales-blocked
        number: "+1 (500) 555-0001"
        caller_prefix: "+1 500 555 099"
        reject: true
      - name: sales-plivo
        number: "+1-500-555-0001"
        provider: plivo
        agent: {id: agent-plivo}
      - name: sales
        number: "+15005550001"
        agent: {id: agent-sales}
      - name: support
        number: ["+15005550002", "+15005550003"]
        inline: {systemPrompt: "Support line."}
    """


def call(to: str, provider: str = "twilio", caller: str = CALLER) -> InboundCall:
    return InboundCall(provider=provider, call_id="CA1", from_number=caller, to_number=to)


def route_name(table: RoutingTable, inbound: InboundCall) -> str | None:
    route = table.resolve(inbound)
    return route.name if route is not None else None


@pytest.fixture
def table(routes_file: RoutesFile) -> RoutingTable:
    return table_from_settings(routes_file.settings(TABLE))


@pytest.mark.parametrize(
    ("provider", "sent_to"),
    [
        ("twilio", "+15005550002"),
        ("telnyx", "+15005550002"),
        # Plivo sends numbers without the +; the adapter's parse normalises them.
        ("plivo", "15005550002"),
        ("twilio", "+1 (500) 555-0002"),
    ],
)
async def test_called_number_matches_in_e164_whatever_the_provider_sends(
    table: RoutingTable, provider: str, sent_to: str
) -> None:
    assert route_name(table, call(to_e164(sent_to), provider)) == "support"


def test_a_route_takes_all_of_its_numbers(table: RoutingTable) -> None:
    assert route_name(table, call("+15005550003")) == "support"


def test_provider_filter_applies_only_to_its_provider(table: RoutingTable) -> None:
    assert route_name(table, call("+15005550001", "plivo")) == "sales-plivo"
    assert route_name(table, call("+15005550001", "twilio")) == "sales"
    assert route_name(table, call("+15005550001", "telnyx")) == "sales"


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo"])
def test_caller_prefix_route_comes_first_for_matching_callers(
    table: RoutingTable, provider: str
) -> None:
    assert route_name(table, call("+15005550001", provider, caller="+15005550991")) == (
        "sales-blocked"
    )


def test_caller_prefix_route_is_skipped_for_other_callers(table: RoutingTable) -> None:
    assert route_name(table, call("+15005550001", caller="+15005550981")) == "sales"
    assert route_name(table, call("+15005550001", caller="anonymous")) == "sales"


def test_first_matching_route_wins(routes_file: RoutesFile) -> None:
    table = table_from_settings(
        routes_file.settings(
            """
            routes:
              - name: narrow
                number: "+15005550001"
                provider: telnyx
                caller_prefix: "+44"
                reject: true
              - name: telnyx
                number: "+15005550001"
                provider: telnyx
                agent: {id: a}
              - name: any
                number: "+15005550001"
                agent: {id: b}
            """
        )
    )
    assert route_name(table, call("+15005550001", "telnyx", caller="+447700900123")) == "narrow"
    assert route_name(table, call("+15005550001", "telnyx")) == "telnyx"
    assert route_name(table, call("+15005550001", "twilio", caller="+447700900123")) == "any"


def test_unknown_number_gets_no_route_without_default(table: RoutingTable) -> None:
    assert table.resolve(call("+15005550009")) is None
    assert table.fallback_for(call("+15005550009")) is None


def test_unknown_number_gets_the_default_route(routes_file: RoutesFile) -> None:
    table = table_from_settings(
        routes_file.settings(
            """
            routes:
              - number: "+15005550001"
                reject: true
            default:
              agent: {id: agent-default}
            """
        )
    )
    route = table.resolve(call("+15005550009"))
    assert route == Route(
        "default",
        AgentTarget("agent-default"),
        FallbackPlan(DEFAULT_FALLBACK_MESSAGE, None),
    )
    assert route_name(table, call("+15005550001")) == "routes[0]"


def test_routes_are_built_with_their_fields_and_fallbacks(routes_file: RoutesFile) -> None:
    table = table_from_settings(
        routes_file.settings(
            """
            routes:
              - name: sales
                number: "+15005550001"
                agent:
                  id: agent-sales
                  templateContext: {line: sales}
                  maxDuration: 900s
                  metadata: {team: sales}
                fallback:
                  message: Sales will call you back.
              - name: support
                number: "+15005550002"
                inline:
                  systemPrompt: "Line {{calledNumber}}, caller {{ callerNumber }}."
                  voice: Mark
                  model: null
                fallback:
                  dial_number: null
              - name: blocked
                number: "+15005550003"
                reject: true
            """,
            fallback_message="Global message.",
            fallback_dial_number="+15005550100",
        )
    )
    sales, support, blocked = (rule.route for rule in table.rules)
    assert sales == Route(
        "sales",
        AgentTarget(
            "agent-sales", {"line": "sales"}, {"maxDuration": "900s", "metadata": {"team": "sales"}}
        ),
        FallbackPlan("Sales will call you back.", "+15005550100"),
    )
    prompt = "Line {{calledNumber}}, caller {{ callerNumber }}."
    assert support == Route(
        "support",
        InlineTarget(
            {"systemPrompt": prompt, "voice": "Mark"},
            {"systemPrompt": compile_value(prompt)},
        ),
        FallbackPlan("Global message.", None),
    )
    assert blocked == Route(
        "blocked", RejectTarget(), FallbackPlan("Global message.", "+15005550100")
    )


def test_without_routes_file_the_environment_is_the_only_route() -> None:
    table = table_from_settings(make_settings(ultravox_voice="Mark"))
    assert table.rules == ()
    assert table.resolve(call("+15005550009")) == Route(
        "default",
        InlineTarget({"systemPrompt": DEFAULT_SYSTEM_PROMPT, "voice": "Mark"}),
        FallbackPlan(DEFAULT_FALLBACK_MESSAGE, None),
    )


def test_a_blank_routes_file_setting_means_none() -> None:
    assert make_settings(routes_file="  ").routes_file is None


async def test_single_call_settings_beside_a_routes_file_are_logged_as_unused(
    routes_file: RoutesFile, caplog: pytest.LogCaptureFixture
) -> None:
    settings = routes_file.settings(
        "default:\n  reject: true\n", ultravox_agent_id="agent-1", ultravox_call_options="{}"
    )
    caplog.set_level(logging.INFO, logger="app")
    async with running_app(settings):
        pass

    [fields] = [
        record.fields  # type: ignore[attr-defined]
        for record in caplog.records
        if record.getMessage() == "startup.settings_unused"
    ]
    assert fields == {
        "settings": "ULTRAVOX_AGENT_ID,ULTRAVOX_CALL_OPTIONS",
        "reason": "ROUTES_FILE is set",
    }


def test_single_call_settings_are_used_without_routes_file() -> None:
    assert unused_settings(make_settings(ultravox_agent_id="agent-1")) == []
