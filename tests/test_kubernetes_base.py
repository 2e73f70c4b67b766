"""The Kubernetes base as shipped answers calls: the Deployment's environment plus the example
Secret's keys (with working values), the ConfigMap mounted where the Deployment mounts it."""

from pathlib import Path
from typing import Any

import pytest
import respx
import yaml

from app.config import Settings, load_settings
from tests.conftest import (
    API_KEY,
    API_URL,
    PLIVO_TOKEN,
    TELNYX_PUBLIC_KEY,
    TWILIO_TOKEN,
    created_call,
    running_app,
    twilio_fields,
    twilio_webhook,
)

BASE = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
# The example Secret's placeholders, replaced as an operator would.
SECRET_VALUES = {
    "ULTRAVOX_API_KEY": API_KEY,
    "PUBLIC_BASE_URL": "http://bridge.test",
    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    "TELNYX_PUBLIC_KEY": TELNYX_PUBLIC_KEY,
    "PLIVO_AUTH_TOKEN": PLIVO_TOKEN,
}


def manifest(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((BASE / name).read_text())
    return document


def pod_environment(redis_url: str, mounts: Path) -> dict[str, str]:
    """The bridge container's environment: the Secret (envFrom), then its own `env`, which
    Kubernetes lets win; paths under a mounted volume point into `mounts`."""
    container = manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    secret = manifest("secret.example.yaml")["stringData"]
    assert set(secret) == set(SECRET_VALUES)  # every key of the example gets a working value
    env = dict(SECRET_VALUES)
    env.update({item["name"]: item["value"] for item in container["env"]})
    env["REDIS_URL"] = redis_url  # the base's Redis Service, here a local redis-server
    env["ULTRAVOX_API_URL"] = API_URL  # Ultravox, mocked
    for mount in container["volumeMounts"]:
        if env["ROUTES_FILE"].startswith(mount["mountPath"] + "/"):
            env["ROUTES_FILE"] = str(mounts / env["ROUTES_FILE"].removeprefix("/"))
            break
    return env


def settings_of_the_pod(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.fixture
def mounts(tmp_path: Path) -> Path:
    """The ConfigMap's files where the Deployment mounts them, below `tmp_path`."""
    routes = manifest("configmap-routes.yaml")["data"]
    folder = tmp_path / "etc" / "ultravox-bridge"
    folder.mkdir(parents=True)
    for name, text in routes.items():
        (folder / name).write_text(text)
    return tmp_path


async def test_the_base_answers_calls_with_the_secrets_settings(
    redis_url: str,
    mounts: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ultravox: respx.MockRouter,
) -> None:
    settings = settings_of_the_pod(pod_environment(redis_url, mounts), monkeypatch, tmp_path)
    created = ultravox.post("/calls").mock(return_value=created_call())

    async with running_app(settings) as client:
        response = await twilio_webhook(twilio_fields()).send(client)

    assert settings.routes_file is None
    assert response.status_code == 200
    assert "<Connect><Stream" in response.text
    assert created.call_count == 1


async def test_naming_the_mounted_routes_file_routes_by_the_configmap(
    redis_url: str, mounts: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = pod_environment(redis_url, mounts)
    env["ROUTES_FILE"] = str(mounts / "etc/ultravox-bridge/routes.yaml")  # as the README says
    settings = settings_of_the_pod(env, monkeypatch, tmp_path)

    fields = twilio_fields() | {"To": "+15005550009"}  # a number the ConfigMap does not list
    async with running_app(settings) as client:
        response = await twilio_webhook(fields).send(client)

    assert settings.routes_file == mounts / "etc/ultravox-bridge/routes.yaml"
    assert response.status_code == 200
    assert "<Reject" in response.text  # the example routes file's default
