"""An outbound request's `agentId` starts an agent call with its route's call fields, and an
agent call takes only some fields: the same list the routes file's `agent:` and
ULTRAVOX_CALL_OPTIONS are checked against, so Ultravox never refuses the request for them."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import respx

from app.config import load_settings
from app.routing.schema import AgentCall
from app.settings import ConfigError
from app.ultravox import AGENT_CALL_FIELDS
from tests.conftest import AGENT_ID, API_KEY, running_app
from tests.outbound_mocks import (
    AUTH,
    CALLEE,
    OUR_NUMBER,
    outbound_settings,
    telnyx_accepts,
    ultravox_created,
)

INLINE_ROUTE = f"""\
routes:
  - name: reminders
    number: "{OUR_NUMBER}"
    inline:
      systemPrompt: You remind people of appointments.
      model: fixie-ai/ultravox
      temperature: 0.2
      voice: Mark
      maxDuration: 300s
      languageHint: de
      timeExceededMessage: Goodbye.
      inactivityMessages: [{{duration: 10s, message: Are you there?}}]
      vadSettings: {{turnEndpointDelay: 0.5s}}
      recordingEnabled: true
      metadata: {{team: care}}
"""


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def test_agent_override_sends_only_the_fields_an_agent_call_takes(
    apis: respx.MockRouter, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(INLINE_ROUTE)
    created = ultravox_created(apis, f"/agents/{AGENT_ID}/calls")
    telnyx_accepts(apis)
    request = {"provider": "telnyx", "to": CALLEE, "agentId": AGENT_ID}
    async with running_app(outbound_settings(routes_file=routes)) as client:
        response = await client.post("/calls", json=request, headers=AUTH)

    assert response.status_code == 201
    assert json.loads(created.calls.last.request.content) == {
        "firstSpeakerSettings": {"user": {}},
        "voice": "Mark",
        "maxDuration": "300s",
        "recordingEnabled": True,
        "metadata": {
            "team": "care",
            "provider": "telnyx",
            "callerNumber": CALLEE,
            "calledNumber": OUR_NUMBER,
            "direction": "outbound",
        },
        "medium": {"telnyx": {}},
        "templateContext": {
            "callerNumber": CALLEE,
            "calledNumber": OUR_NUMBER,
            "provider": "telnyx",
        },
        "joinTimeout": "60s",
    }


def test_the_routes_file_agent_model_lists_exactly_the_agent_call_fields() -> None:
    assert set(AgentCall.model_fields) == AGENT_CALL_FIELDS | {"id"}


@pytest.mark.parametrize("field", ["inactivityMessages", "languageHint", "vadSettings"])
def test_agent_call_options_an_agent_call_refuses_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, field: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ULTRAVOX_API_KEY", API_KEY)
    monkeypatch.setenv("ULTRAVOX_AGENT_ID", AGENT_ID)
    monkeypatch.setenv("ULTRAVOX_CALL_OPTIONS", json.dumps({field: 1, "maxDuration": "60s"}))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        f"invalid configuration:\n  settings: ULTRAVOX_CALL_OPTIONS sets {field}, which an "
        "agent call cannot override; change them on the agent or unset ULTRAVOX_AGENT_ID (an "
        "agent call takes callbacks, firstSpeakerSettings, initialMessages, joinTimeout, "
        "maxDuration, metadata, recordingEnabled, templateContext, voice)"
    )
