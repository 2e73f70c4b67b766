"""Transfer tests: a routes file with transfer targets, the providers' REST APIs and Ultravox
stood in with respx, and helpers that walk a call from its webhook to the agent's tool call."""

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import pytest
import respx

from app.config import Settings
from tests.conftest import API_URL, BASE_URL, ProviderCase, make_settings, running_app

SECRET = "transfer-secret-0123456789abcdef-0123456789"
TWILIO_API = "https://twilio.test"
TELNYX_API = "https://telnyx.test"
PLIVO_API = "https://plivo.test"
TWILIO_SID = "AC0123456789abcdef0123456789abcdef"
PLIVO_AUTH_ID = "MA0123456789ABCDEFGH"
TELNYX_API_KEY = "KEY0123456789ABCDEF_test"
FIRST_CALL = "3f1c2d4e-0000-4000-8000-000000000001"
SECOND_CALL = "3f1c2d4e-0000-4000-8000-000000000002"
FIRST_JOIN = "wss://voice.ultravox.test/calls/first/join"
SECOND_JOIN = "wss://voice.ultravox.test/calls/second/join"
SALES = "+15005550100"
PERSON = "+15005550101"
OUR_NUMBER = "+15005550001"

ROUTES = """
routes:
  - name: support
    number: "+15005550001"
    inline:
      systemPrompt: You answer the support line.
      maxDuration: "600s"
    transfer:
      targets:
        sales:
          number: "+15005550100"
          description: the sales team
          ring_timeout_seconds: 20
          caller_id: "+15005550001"
        person:
          number: "+15005550101"
          description: a support engineer
          mode: warm
        night-desk:
          sip: "sip:desk@pbx.example.com"
          hours: {timezone: Europe/Berlin, open: {mon-fri: "09:00-17:00"}}
"""

HISTORY = [
    {"role": "MESSAGE_ROLE_AGENT", "text": "Hello, how can I help?"},
    {"role": "MESSAGE_ROLE_USER", "text": "I want to buy ten licences."},
    {"role": "MESSAGE_ROLE_TOOL_CALL", "text": "{}", "toolName": "transferCall"},
    {"role": "MESSAGE_ROLE_AGENT", "text": "Let me transfer you to sales."},
]


def transfer_settings(path: Path, routes: str = ROUTES, **overrides: Any) -> Settings:
    path.write_text(dedent(routes), encoding="utf-8")
    values: dict[str, Any] = {
        "routes_file": path,
        "public_base_url": BASE_URL,
        "transfer_token_secret": SECRET,
        "twilio_account_sid": TWILIO_SID,
        "twilio_api_url": TWILIO_API,
        "plivo_auth_id": PLIVO_AUTH_ID,
        "plivo_api_url": PLIVO_API,
        "telnyx_api_key": TELNYX_API_KEY,
        "telnyx_api_url": TELNYX_API,
        # Plivo's and Telnyx's own tests turn them on; here their drivers are not needed.
        "telnyx_public_key": "",
        "plivo_auth_token": "",
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
def apis() -> Iterator[respx.MockRouter]:
    """Ultravox and the providers' REST APIs; a request nobody stood in for fails the test."""
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(transfer_settings(tmp_path / "routes.yaml")) as client:
        yield client


def ultravox_creates(apis: respx.MockRouter) -> respx.Route:
    """`POST /calls`: the first call, then the agent a returned caller talks to."""
    return apis.post(f"{API_URL}/calls").mock(
        side_effect=[
            httpx.Response(201, json={"callId": FIRST_CALL, "joinUrl": FIRST_JOIN}),
            httpx.Response(201, json={"callId": SECOND_CALL, "joinUrl": SECOND_JOIN}),
        ]
    )


def ultravox_history(apis: respx.MockRouter) -> respx.Route:
    return apis.get(f"{API_URL}/calls/{FIRST_CALL}/messages").respond(
        200, json={"next": None, "previous": None, "results": HISTORY, "total": len(HISTORY)}
    )


@dataclass(frozen=True)
class ToolAccess:
    """What Ultravox got for one call: the tool's URL, its static session and credential."""

    url: str
    session: str
    token: str
    call_id: str

    def body(self, target: str = "sales", **overrides: Any) -> dict[str, Any]:
        body = {
            "callId": self.call_id,
            "session": self.session,
            "target": target,
            "reason": "wants a quote",
            "summary": "Ada wants ten licences.",
        }
        body.update(overrides)
        return body


def tool_access(create_request: httpx.Request, call_id: str = FIRST_CALL) -> ToolAccess:
    body = json.loads(create_request.content)
    (tool,) = [t for t in body["selectedTools"] if "temporaryTool" in t]
    (session,) = tool["temporaryTool"]["staticParameters"]
    return ToolAccess(
        tool["temporaryTool"]["http"]["baseUrlPattern"],
        session["value"],
        tool["authTokens"]["bridgeTransferToken"],
        call_id,
    )


async def answer_call(
    client: httpx.AsyncClient, provider: ProviderCase, creates: respx.Route
) -> ToolAccess:
    """The provider's webhook for a new call; the tool access Ultravox was given."""
    response = await provider.webhook(provider.fields(), method="POST").send(client)
    assert response.status_code == 200
    assert FIRST_JOIN in response.text
    return tool_access(creates.calls[0].request)


async def call_tool(
    client: httpx.AsyncClient, access: ToolAccess, target: str = "sales", **overrides: Any
) -> httpx.Response:
    return await client.post(
        access.url,
        json=access.body(target, **overrides),
        headers={"X-Bridge-Transfer-Token": access.token},
    )


def transfer_id_in(text: str) -> str:
    match = re.search(r"/transfer/\w+/([A-Za-z0-9_-]+)/", text)
    assert match, text
    return match.group(1)


def form_of(request: httpx.Request) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(request.content.decode()))


def second_call_body(creates: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(creates.calls[1].request.content)
    return body


def expected_history() -> list[dict[str, str]]:
    return [
        {"role": m["role"], "text": m["text"]}
        for m in HISTORY
        if m["role"] != "MESSAGE_ROLE_TOOL_CALL"
    ]
