"""Adding a provider is its folder plus its line in the registry: a copy of `app/` with a tiny
fake provider registered that way is configured, listed, routed and simulated like the others,
with nothing else changed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FAKE_PROVIDER = {
    "__init__.py": '''
"""A provider that exists only in this test."""

from app.providers.fake.adapter import FakeAdapter
from app.providers.fake.options import FakeOptions
from app.providers.fake.simulator import FakeSimulator
from app.providers.spec import ProviderSpec

SPEC = ProviderSpec("fake", FakeOptions, adapter=FakeAdapter, simulator=FakeSimulator)
''',
    "options.py": """
from pydantic import Field

from app.settings import ProviderOptions, SecretList


class FakeOptions(ProviderOptions):
    fake_token: SecretList = Field(default_factory=list)
""",
    "adapter.py": """
import xml.etree.ElementTree as ET
from typing import Any

from app.auth import matches_any
from app.calltypes import Answer, FallbackPlan, InboundCall, SignatureError, WebhookRequest
from app.providers.base import ProviderAdapter, inbound_call, single_values
from app.providers.fake.options import FakeOptions
from app.settings import ServiceSettings
from app.ultravox import UltravoxCall


def _xml(response: ET.Element) -> Answer:
    return Answer(ET.tostring(response), "text/xml")


class FakeAdapter(ProviderAdapter):
    name = "fake"
    secret_setting = "FAKE_TOKEN"

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        options = FakeOptions.of(settings)
        self._tokens = [token.get_secret_value().encode() for token in options.fake_token]

    @property
    def has_secrets(self) -> bool:
        return bool(self._tokens)

    def verify(self, request: WebhookRequest) -> None:
        if not matches_any(request.headers.get("x-fake-token", "").encode(), self._tokens):
            raise SignatureError("wrong X-Fake-Token")

    def parse(self, request: WebhookRequest) -> InboundCall:
        return inbound_call(self.name, single_values(request.params()), "CallId", "From", "To")

    def medium(self) -> dict[str, Any]:
        return {"fake": {}}

    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        response = ET.Element("Response")
        ET.SubElement(ET.SubElement(response, "Connect"), "Stream", url=ultravox_call.join_url)
        return _xml(response)

    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        response = ET.Element("Response")
        ET.SubElement(response, "Say").text = plan.message
        return _xml(response)

    def reject_answer(self) -> Answer:
        response = ET.Element("Response")
        ET.SubElement(response, "Reject")
        return _xml(response)
""",
    "simulator.py": """
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import ClassVar

from app.providers.simulator import AnswerKind, AnswerReading, HttpMethod, Simulator, unexpected


class FakeSimulator(Simulator):
    name = "fake"
    title = "Fake"
    default_method: ClassVar[HttpMethod] = "POST"
    call_id_field = "CallId"
    secret_setting = "FAKE_TOKEN"
    service_secret_setting = "FAKE_TOKEN"

    def __init__(self, token: str) -> None:
        self._token = token

    def fields(self, from_number: str, to_number: str) -> dict[str, str]:
        return {"CallId": secrets.token_hex(8), "From": from_number, "To": to_number}

    def sign(
        self, method: HttpMethod, url: str, params: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        return {"X-Fake-Token": self._token}

    def read_answer(self, root: ET.Element) -> AnswerReading:
        stream = root.find("Connect/Stream")
        if stream is None:
            return unexpected("no <Connect><Stream>")
        return AnswerReading(AnswerKind.STREAM, "a fake stream", stream.get("url"))
""",
}

CHECK = r"""
import asyncio, json, os, sys
from pathlib import Path

import httpx
import respx

import app
from app.cli import build_parser
from app.config import load_settings
from app.main import create_app
from app.providers.fake.simulator import FakeSimulator
from app.routing import RoutesFileError, load_routing_table
from app.simulate.send import simulate

API_URL = "https://ultravox.test/api"
JOIN_URL = "wss://voice.ultravox.test/calls/fake/join"
os.environ["FAKE_TOKEN"] = "fake-token-0123456789"
settings = load_settings(_env_file=None, ultravox_api_key="k", ultravox_api_url=API_URL)
routes = Path("routes.yaml")


def routes_file_takes(provider):
    routes.write_text(
        f'routes:\n  - number: "+15005550001"\n    provider: {provider}\n'
        '    inline: {systemPrompt: hi}\n'
    )
    try:
        load_routing_table(routes, settings)
    except RoutesFileError as exc:
        return str(exc)
    return "ok"


async def main():
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        with respx.mock(base_url=API_URL) as ultravox:
            ultravox.post("/calls").respond(201, json={"callId": "c-1", "joinUrl": JOIN_URL})
            simulation = await simulate(
                FakeSimulator("fake-token-0123456789"),
                "http://bridge.test/fake/incoming",
                method="POST",
                transport=transport,
                progress=open(os.devnull, "w"),
            )
            sent = json.loads(ultravox.calls.last.request.content)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
            ready = (await client.get("/readyz")).json()["providers"]
    return {
        "app": app.__file__,
        "verdict": simulation.verdict.name,
        "stream_url": simulation.verdict.stream_url,
        "medium": sent["medium"],
        "metadata_provider": sent["metadata"]["provider"],
        "ready": ready,
        "route_fake": routes_file_takes("fake"),
        "route_unknown": routes_file_takes("nobody"),
        "simulate_choice": build_parser().parse_args(
            ["simulate", "fake", "--url", "http://bridge.test/fake/incoming"]
        ).provider,
    }

print(json.dumps(asyncio.run(main())))
"""


def with_fake_provider(tree: Path) -> None:
    """Add the fake provider to the copy of `app/` the way any provider is added: its folder,
    and its entry in the registry (the package's name among the imports, one tuple line)."""
    folder = tree / "app" / "providers" / "fake"
    folder.mkdir()
    for name, source in FAKE_PROVIDER.items():
        (folder / name).write_text(source.lstrip())
    registry = tree / "app" / "providers" / "__init__.py"
    text = registry.read_text()
    imports = "from app.providers import asterisk, plivo, telnyx, twilio, vonage\n"
    entry = "    asterisk.SPEC,\n"
    assert imports in text and entry in text
    text = text.replace(
        imports, "from app.providers import asterisk, fake, plivo, telnyx, twilio, vonage\n"
    )
    registry.write_text(text.replace(entry, entry + "    fake.SPEC,\n"))


def test_a_provider_added_as_a_folder_and_a_registry_line_is_routed_simulated_and_listed(
    tmp_path: Path,
) -> None:
    shutil.copytree(
        Path(__file__).parents[2] / "app",
        tmp_path / "app",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    with_fake_provider(tmp_path)

    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.pop("app") == str(tmp_path / "app" / "__init__.py")
    assert result == {
        "verdict": "stream",
        "stream_url": "wss://voice.ultravox.test/calls/fake/join",
        "medium": {"fake": {}},
        "metadata_provider": "fake",
        "ready": {"twilio": False, "telnyx": False, "plivo": False, "vonage": False, "fake": True},
        "route_fake": "ok",
        "route_unknown": (
            "routes.yaml: routes[0]: provider: 'nobody' is not a provider; use one of twilio, "
            "telnyx, plivo, vonage, asterisk, fake"
        ),
        "simulate_choice": "fake",
    }
