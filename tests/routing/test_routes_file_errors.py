"""Every way a routes file can be wrong stops start-up with one message per mistake naming the
file, the route and the field."""

from pathlib import Path

import pytest
import yaml

from app.routing import RoutesFileError, load_routing_table, table_from_settings
from app.routing.routes_file import SAFE_LOADER
from app.settings import ConfigError
from tests.conftest import make_settings, running_app
from tests.routing.conftest import RoutesFile

E164_HINT = "is not a phone number in E.164 form (+, country code, number, such as +15005550100)"
QUOTE_HINT = "unquoted, YAML reads a phone number as an integer and drops its +"
# PyYAML words the same mistake differently with and without libyaml.
YAML_PROBLEM = (
    "did not find expected ',' or ']'"
    if SAFE_LOADER is not yaml.SafeLoader
    else "expected ',' or ']', but got '<stream end>'"
)
PLACEHOLDERS = "the bridge fills {{callerNumber}}, {{calledNumber}}, {{provider}}"

CASES = {
    "bad_yaml": (
        "routes:\n  - number: [+15005550001\n",
        [f"is not valid YAML ({YAML_PROBLEM} at line 3, column 1)"],
    ),
    "not_a_mapping": ("- +15005550001\n", ["must be a mapping with `routes:` and/or `default:`"]),
    "empty": ("", ["has no routes and no default: every call would be rejected"]),
    "unknown_top_level_field": (
        "route:\n  - number: '+15005550001'\n",
        ["route: unknown field; expected one of routes, default"],
    ),
    "unknown_route_field": (
        "routes:\n  - name: sales\n    number: '+15005550001'\n    callerPrefix: '+1'\n"
        "    reject: true\n",
        [
            "routes[0] (sales): callerPrefix: unknown field; expected one of agent, inline, "
            "reject, fallback, web, transfer, max_concurrent_calls, overflow, name, number, "
            "provider, caller_prefix"
        ],
    ),
    "unknown_agent_field": (
        "routes:\n  - number: '+15005550001'\n    agent: {id: a, voise: Mark}\n",
        [
            "routes[0]: agent.voise: unknown field; expected one of id, templateContext, voice, "
            "maxDuration, joinTimeout, recordingEnabled, metadata, initialMessages, "
            "firstSpeakerSettings, callbacks"
        ],
    ),
    "unknown_default_field": (
        "default:\n  number: '+15005550001'\n  reject: true\n",
        [
            "default: number: unknown field; expected one of agent, inline, reject, fallback, "
            "web, transfer, max_concurrent_calls, overflow, name"
        ],
    ),
    "same_number_and_provider_twice": (
        "routes:\n  - name: a\n    number: '+15005550001'\n    provider: twilio\n    reject: true\n"
        "  - name: b\n    number: '+1 500 555 0001'\n    provider: twilio\n    agent: {id: x}\n",
        [
            "routes[1] (b): number: +15005550001 is already routed by routes[0] (a) for the "
            "same provider and callers"
        ],
    ),
    "broader_route_first": (
        "routes:\n  - name: a\n    number: '+15005550001'\n    reject: true\n"
        "  - name: b\n    number: '+15005550001'\n    provider: twilio\n    reject: true\n",
        [
            "routes[1] (b): number: +15005550001 is already routed by routes[0] (a), which takes "
            "every call this route would (any provider or a shorter caller prefix): put the "
            "narrower route first"
        ],
    ),
    "number_listed_twice": (
        "routes:\n  - number: ['+15005550001', '+15005550001']\n    reject: true\n",
        ["routes[0]: number: +15005550001 is listed twice"],
    ),
    "agent_and_inline": (
        "routes:\n  - name: a\n    number: '+15005550001'\n    agent: {id: x}\n"
        "    inline: {systemPrompt: hi}\n",
        ["routes[0] (a): set exactly one of agent, inline or reject (found agent and inline)"],
    ),
    "neither_agent_nor_inline": (
        "routes:\n  - name: a\n    number: '+15005550001'\n    reject: false\n",
        ["routes[0] (a): set exactly one of agent, inline or reject (found none)"],
    ),
    "default_with_agent_and_reject": (
        "default:\n  agent: {id: x}\n  reject: true\n",
        ["default: set exactly one of agent, inline or reject (found agent and reject)"],
    ),
    "number_without_country_code": (
        "routes:\n  - name: a\n    number: '5005550001'\n    reject: true\n",
        [f"routes[0] (a): number: '5005550001' {E164_HINT}"],
    ),
    "not_a_number": (
        "routes:\n  - number: ['+15005550001', sales]\n    reject: true\n",
        [f"routes[0]: number: 'sales' {E164_HINT}"],
    ),
    "unquoted_number": (
        "routes:\n  - number: +15005550001\n    reject: true\n",
        [f'routes[0]: number: 15005550001 must be quoted, such as "+15005550001": {QUOTE_HINT}'],
    ),
    "missing_number": (
        "routes:\n  - name: a\n    reject: true\n",
        ["routes[0] (a): number: is required"],
    ),
    "bad_caller_prefix": (
        "routes:\n  - number: '+15005550001'\n    caller_prefix: '1500'\n    reject: true\n",
        [
            "routes[0]: caller_prefix: '1500' must be the start of an E.164 number: + then "
            "digits, such as +1500"
        ],
    ),
    "bad_fallback_number": (
        "routes:\n  - number: '+15005550001'\n    reject: true\n"
        "    fallback: {dial_number: '0800 123'}\n",
        [f"routes[0]: fallback.dial_number: '0800 123' {E164_HINT}"],
    ),
    "unknown_provider": (
        "routes:\n  - number: '+15005550001'\n    provider: acme\n    reject: true\n",
        [
            "routes[0]: provider: 'acme' is not a provider; use one of twilio, telnyx, plivo, "
            "vonage, asterisk, exotel"
        ],
    ),
    "unquoted_date": (
        "routes:\n  - name: a\n    number: '+15005550001'\n"
        "    inline: {systemPrompt: hi, initialState: {since: 2024-01-01}}\n",
        [
            "routes[0] (a): initialState: holds a value JSON cannot carry (YAML reads unquoted "
            "dates and times, .nan and .inf that way): quote it or write another value"
        ],
    ),
    "nan_value": (
        "routes:\n  - name: a\n    number: '+15005550001'\n"
        "    inline: {systemPrompt: hi, initialState: {score: .nan}}\n",
        [
            "routes[0] (a): initialState: holds a value JSON cannot carry (YAML reads unquoted "
            "dates and times, .nan and .inf that way): quote it or write another value"
        ],
    ),
    "medium_set": (
        "routes:\n  - name: a\n    number: '+15005550001'\n"
        "    inline: {systemPrompt: hi, medium: {twilio: {}}}\n",
        [
            "routes[0] (a): inline.medium: is set by the bridge from the provider that sent the "
            "call; remove it"
        ],
    ),
    "deprecated_first_speaker": (
        "default:\n  agent: {id: x, firstSpeaker: FIRST_SPEAKER_AGENT}\n",
        [
            "default: agent.firstSpeaker: is deprecated and set by the bridge; use "
            "firstSpeakerSettings instead"
        ],
    ),
    "agent_with_system_prompt": (
        "routes:\n  - name: a\n    number: '+15005550001'\n    agent: {id: x, systemPrompt: hi}\n",
        [
            "routes[0] (a): agent.systemPrompt: an agent call cannot set systemPrompt: change it "
            "on the agent in Ultravox, or make this an inline route"
        ],
    ),
    "agent_with_model": (
        "default:\n  agent: {id: x, model: fixie-ai/ultravox}\n",
        [
            "default: agent.model: an agent call cannot set model: change it on the agent in "
            "Ultravox, or make this an inline route"
        ],
    ),
    "agent_template_context_overrides_bridge": (
        "default:\n  agent: {id: x, templateContext: {callerNumber: '+1', provider: x}}\n",
        [
            "default: agent.templateContext: callerNumber, provider are filled by the bridge for "
            "each call"
        ],
    ),
    "unknown_placeholder_in_prompt": (
        "routes:\n  - name: a\n    number: '+15005550001'\n"
        "    inline: {systemPrompt: 'Hello {{callerName}}'}\n",
        ["routes[0] (a): inline.systemPrompt: unknown placeholder {{callerName}}; " + PLACEHOLDERS],
    ),
    "unknown_placeholder_in_messages": (
        "default:\n  inline:\n"
        "    inactivityMessages: [{duration: 30s, message: 'Hi {{ name }}'}]\n",
        [f"default: inline.inactivityMessages: unknown placeholder {{{{name}}}}; {PLACEHOLDERS}"],
    ),
    "bad_duration": (
        "default:\n  agent: {id: x, maxDuration: 600}\n",
        ['default: agent.maxDuration: must be a duration in seconds such as "600s", not 600'],
    ),
    "metadata_not_text": (
        "default:\n  agent: {id: x, metadata: {priority: 1}}\n",
        ["default: agent.metadata.priority: Input should be a valid string"],
    ),
    "duplicate_name": (
        "routes:\n  - name: a\n    number: '+15005550001'\n    reject: true\n"
        "  - name: a\n    number: '+15005550002'\n    reject: true\n",
        ["routes[1] (a): name: 'a' is already used by routes[0] (a)"],
    ),
    "several_mistakes": (
        "routes:\n  - name: a\n    number: x\n    reject: true\n"
        "  - number: '+15005550001'\n    inline: {temperature: 3}\n",
        [
            f"routes[0] (a): number: 'x' {E164_HINT}",
            "routes[1]: inline.temperature: Input should be less than or equal to 1",
        ],
    ),
}


@pytest.mark.parametrize(("text", "errors"), CASES.values(), ids=CASES.keys())
def test_invalid_routes_file_is_refused_with_one_line_per_mistake(
    routes_file: RoutesFile, text: str, errors: list[str]
) -> None:
    path = routes_file.write(text)
    with pytest.raises(RoutesFileError) as raised:
        load_routing_table(path, make_settings())
    assert str(raised.value) == "\n".join(f"{path}: {error}" for error in errors)


def test_missing_routes_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as raised:
        table_from_settings(make_settings(routes_file=path))
    assert str(raised.value) == f"{path}: cannot be read (No such file or directory)"


async def test_invalid_routes_file_stops_start_up(routes_file: RoutesFile) -> None:
    settings = routes_file.settings("routes:\n  - number: '+15005550001'\n")
    with pytest.raises(RoutesFileError) as raised:
        async with running_app(settings):
            pass
    assert str(raised.value) == (
        f"{routes_file.path}: routes[0]: set exactly one of agent, inline or reject (found none)"
    )
