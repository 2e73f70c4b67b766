"""Helpers for web call tests: a routes file with routes open to the web, and requests sent
the way a browser sends them (with an Origin)."""

from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.conftest import AGENT_ID, BASE_URL, make_settings

ORIGIN = BASE_URL  # the service's own /talk page
SITE = "https://www.example.com"

ROUTES = f"""
routes:
  - name: support
    number: "+15005550002"
    inline:
      systemPrompt: You answer the support line {{{{calledNumber}}}}.
      voice: Mark
      maxDuration: "1800s"
      metadata: {{team: support}}
    web:
      systemPrompt: "You answer visitors of the {{{{page}}}} page ({{{{provider}}}})."
      greeting: Hello {{{{name}}}}, how can I help?
      context: [page, name]
  - name: sales
    number: "+15005550003"
    agent:
      id: {AGENT_ID}
      templateContext: {{team: sales}}
    web: true
  - name: phone-only
    number: "+15005550004"
    agent: {{id: {AGENT_ID}}}
"""


def web_settings(tmp_path: Path, routes: str = ROUTES, **overrides: Any) -> Settings:
    path = tmp_path / "routes.yaml"
    path.write_text(dedent(routes), encoding="utf-8")
    return make_settings(routes_file=path, **overrides)


async def post_call(
    client: httpx.AsyncClient, body: Any, origin: str | None = ORIGIN, **headers: str
) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    if origin is not None:
        sent["origin"] = origin
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return await client.post("/web/calls", content=content, headers=sent)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standin(**options): options of the stand-in Ultravox of a browser test"
    )
