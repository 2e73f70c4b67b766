"""`web:` in the routes file: what start-up refuses, one line naming route and field."""

from pathlib import Path

import pytest

from app.routing import RoutesFileError, load_routing_table
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("routes", "line"),
    [
        (
            "routes:\n  - number: '+15005550002'\n    agent: {id: a}\n    web: true\n",
            "routes[0]: web: a route open to the web needs a `name:` of letters, digits, - and _ "
            "(at most 64): browsers reach it as /talk/<name>, and 'routes[0]' cannot be",
        ),
        (
            "routes:\n  - name: closed\n    number: '+15005550002'\n    reject: true\n"
            "    web: true\n",
            "routes[0] (closed): web: a reject route cannot be open to the web: remove `web:`",
        ),
        (
            "routes:\n  - name: s\n    number: '+15005550002'\n    agent: {id: a}\n"
            "    web: {systemPrompt: hi}\n",
            "routes[0] (s): web: systemPrompt: an agent call cannot set systemPrompt: change it "
            "on the agent, or make this an inline route",
        ),
        (
            "routes:\n  - name: s\n    number: '+15005550002'\n"
            "    inline: {systemPrompt: 'Caller {{callerNumber}}'}\n    web: true\n",
            "routes[0] (s): web: systemPrompt: a web call has no phone numbers: unknown "
            "placeholder {{callerNumber}}; the bridge fills {{provider}}; give web.systemPrompt",
        ),
        (
            "routes:\n  - name: s\n    number: '+15005550002'\n    agent: {id: a}\n"
            "    web: {context: [callerNumber]}\n",
            "routes[0] (s): web.context: callerNumber are filled by the bridge, not by a web page",
        ),
        (
            "routes:\n  - name: s\n    number: '+15005550002'\n    agent: {id: a}\n"
            "    web: {title: x}\n",
            "routes[0] (s): web.title: unknown field; expected one of systemPrompt, greeting, "
            "context, maxDuration",
        ),
    ],
    ids=["unnamed", "reject", "agent_prompt", "number_placeholder", "bridge_field", "unknown"],
)
def test_route_that_cannot_be_open_to_the_web_stops_start_up(
    tmp_path: Path, routes: str, line: str
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(routes, encoding="utf-8")
    with pytest.raises(RoutesFileError) as raised:
        load_routing_table(path, make_settings())
    assert str(raised.value) == f"{path}: {line}"


def test_web_false_keeps_browsers_out(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "routes:\n  - name: s\n    number: '+15005550002'\n    agent: {id: a}\n    web: false\n",
        encoding="utf-8",
    )
    table = load_routing_table(path, make_settings())
    assert table.web_route("s") is None
    assert table.named("s") is not None
