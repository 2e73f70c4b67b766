"""Routed calls end to end, per provider: a signed webhook to one of several numbers, the exact
Ultravox request its route makes (or none), the exact XML back."""

import json
import logging
from textwrap import dedent

import pytest
import respx

from tests.api.test_inbound import STREAM_XML, expected_metadata
from tests.conftest import CALLED, CALLER, JOIN_URL, ProviderCase, running_app
from tests.routing.conftest import RoutesFile

REJECT_XML = {
    "twilio": '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="rejected" />'
    "</Response>",
    "telnyx": "<?xml version='1.0' encoding='utf-8'?>\n<Response><Reject reason=\"rejected\" />"
    "</Response>",
    "plivo": '<Response><Hangup reason="rejected"/></Response>',
}

ROUTES = f"""
    routes:
      - name: sales
        number: "{CALLED[:2]} ({CALLED[2:5]}) {CALLED[5:8]}-{CALLED[8:]}"
        agent:
          id: agent-sales
          templateContext: {{line: sales, tier: 2}}
          voice: Mark
          maxDuration: 900s
          metadata: {{team: sales}}
          firstSpeakerSettings: {{user: {{}}}}
        fallback:
          message: Sales will call you back.
          dial_number: "+1 500 555 0100"
      - name: support
        number: "+15005550002"
        inline:
          systemPrompt: >-
            You answer {{{{calledNumber}}}} on {{{{provider}}}} for {{{{callerNumber}}}}.
          voice: Jessica
          temperature: 0.3
          recordingEnabled: true
          inactivityMessages:
            - duration: 30s
              message: "Still there, {{{{callerNumber}}}}?"
      - name: blocked
        number: "+15005550003"
        reject: true
    """


def to_number(provider: ProviderCase, number: str) -> dict[str, str]:
    """The provider's webhook fields for a call to `number`, in the provider's own format."""
    fields = provider.fields()
    fields["To"] = number.lstrip("+") if provider.name == "plivo" else number
    return fields


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_agent_route_creates_the_agent_call_with_its_fields(
    provider: ProviderCase, method: str, ultravox: respx.MockRouter, routes_file: RoutesFile
) -> None:
    agent = ultravox.post("/agents/agent-sales/calls").respond(
        201, json={"callId": "c-1", "joinUrl": JOIN_URL}
    )
    async with running_app(routes_file.settings(ROUTES, telnyx_allow_get=True)) as client:
        response = await provider.webhook(provider.fields(), method=method).send(client)

    assert response.text == STREAM_XML[provider.name]
    assert agent.call_count == 1
    assert json.loads(agent.calls.last.request.content) == {
        "firstSpeakerSettings": {"user": {}},
        "voice": "Mark",
        "maxDuration": "900s",
        "metadata": {"team": "sales", **expected_metadata(provider)},
        "medium": {provider.name: {}},
        "templateContext": {
            "line": "sales",
            "tier": 2,
            "callerNumber": CALLER,
            "calledNumber": CALLED,
            "provider": provider.name,
        },
    }


async def test_inline_route_fills_its_placeholders(
    provider: ProviderCase, ultravox: respx.MockRouter, routes_file: RoutesFile
) -> None:
    calls = ultravox.post("/calls").respond(201, json={"callId": "c-2", "joinUrl": JOIN_URL})
    async with running_app(routes_file.settings(ROUTES)) as client:
        response = await provider.webhook(to_number(provider, "+15005550002")).send(client)

    assert response.text == STREAM_XML[provider.name]
    assert json.loads(calls.calls.last.request.content) == {
        "firstSpeakerSettings": {"agent": {}},
        "systemPrompt": f"You answer +15005550002 on {provider.name} for {CALLER}.",
        "voice": "Jessica",
        "temperature": 0.3,
        "recordingEnabled": True,
        "inactivityMessages": [{"duration": "30s", "message": f"Still there, {CALLER}?"}],
        "metadata": {**expected_metadata(provider), "calledNumber": "+15005550002"},
        "medium": {provider.name: {}},
    }


async def test_reject_route_rejects_without_calling_ultravox(
    provider: ProviderCase, ultravox: respx.MockRouter, routes_file: RoutesFile
) -> None:
    calls = ultravox.post("/calls")
    agent = ultravox.post("/agents/agent-sales/calls")
    async with running_app(routes_file.settings(ROUTES)) as client:
        response = await provider.webhook(to_number(provider, "+15005550003")).send(client)

    assert response.status_code == 200
    assert response.text == REJECT_XML[provider.name]
    assert calls.call_count == agent.call_count == 0


async def test_unrouted_number_is_rejected_and_logged(
    provider: ProviderCase,
    ultravox: respx.MockRouter,
    routes_file: RoutesFile,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = ultravox.post("/calls")
    caplog.set_level(logging.INFO, logger="app.bridge")
    async with running_app(routes_file.settings(ROUTES)) as client:
        response = await provider.webhook(to_number(provider, "+15005550009")).send(client)

    assert response.text == REJECT_XML[provider.name]
    assert calls.call_count == 0
    [record] = [r for r in caplog.records if r.name == "app.bridge"]
    assert record.getMessage() == "webhook.rejected"
    assert record.levelno == logging.WARNING
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["reason"], fields["to"], fields["route"]) == (
        "no route for the called number",
        "+15005550009",
        None,
    )


async def test_unrouted_number_takes_the_default_route(
    provider: ProviderCase, ultravox: respx.MockRouter, routes_file: RoutesFile
) -> None:
    agent = ultravox.post("/agents/agent-any/calls").respond(
        201, json={"callId": "c-3", "joinUrl": JOIN_URL}
    )
    settings = routes_file.settings(dedent(ROUTES) + "default:\n  agent: {id: agent-any}\n")
    async with running_app(settings) as client:
        response = await provider.webhook(to_number(provider, "+15005550009")).send(client)

    assert response.text == STREAM_XML[provider.name]
    assert json.loads(agent.calls.last.request.content)["templateContext"] == {
        "callerNumber": CALLER,
        "calledNumber": "+15005550009",
        "provider": provider.name,
    }


FALLBACK_XML = {
    "twilio": '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Sales will call you back.'
    "</Say><Dial>+15005550100</Dial></Response>",
    "telnyx": "<?xml version='1.0' encoding='utf-8'?>\n<Response><Say>Sales will call you back."
    "</Say><Dial>+15005550100</Dial></Response>",
    "plivo": "<Response><Speak>Sales will call you back.</Speak><Dial><Number>+15005550100"
    "</Number></Dial></Response>",
}


async def test_ultravox_failure_gives_the_routes_own_fallback(
    provider: ProviderCase, ultravox: respx.MockRouter, routes_file: RoutesFile
) -> None:
    ultravox.post("/agents/agent-sales/calls").respond(400, json={"detail": "bad voice"})
    async with running_app(routes_file.settings(ROUTES)) as client:
        response = await provider.webhook(provider.fields()).send(client)

    assert response.text == FALLBACK_XML[provider.name]


async def test_fallback_url_gives_the_routes_own_fallback(
    provider: ProviderCase, routes_file: RoutesFile
) -> None:
    async with running_app(routes_file.settings(ROUTES)) as client:
        response = await provider.webhook(
            provider.fields(), path=f"/{provider.name}/fallback"
        ).send(client)

    assert response.text == FALLBACK_XML[provider.name]
