"""`ultravox-bridge check-config`: validates the settings and the routes file without serving,
prints the routing table, exits 0 when all is well and 2 with one line per mistake otherwise."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.config import Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "routes.example.yaml"

EXAMPLE_TABLE = """\
settings: ok
routes: routes.yaml
NUMBER        PROVIDER  CALLER PREFIX  TARGET                                      ROUTE          FALLBACK
+15005550001  any       +1500555099    reject                                      sales-blocked  -
+15005550001  any       any            agent 00000000-0000-4000-8000-000000000001  sales          dial +15005550100
+15005550002  any       any            inline                                      support        hang up
+15005550003  any       any            inline                                      support        hang up
+15005550004  plivo     any            inline                                      support-fr     hang up
any           any       any            agent 00000000-0000-4000-8000-000000000002  default        hang up
"""  # noqa: E501


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what each test sets: no `.env`, no setting from the surrounding environment."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("ULTRAVOX_API_KEY", "test-key")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "twilio-test-token")  # a provider can take calls


def test_example_routes_file_is_valid_and_printed_as_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLE, tmp_path / "routes.yaml")

    assert main(["check-config", "--routes-file", "routes.yaml"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (EXAMPLE_TABLE, "")


def test_routes_file_comes_from_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "routes.yaml").write_text(
        "routes:\n  - number: '+15005550001'\n    provider: telnyx\n    reject: true\n"
    )
    monkeypatch.setenv("ROUTES_FILE", "routes.yaml")
    monkeypatch.setenv("FALLBACK_DIAL_NUMBER", "+15005550100")

    assert main(["check-config"]) == 0
    assert capsys.readouterr().out == (
        "settings: ok\n"
        "routes: routes.yaml\n"
        "NUMBER        PROVIDER  CALLER PREFIX  TARGET  ROUTE      FALLBACK\n"
        "+15005550001  telnyx    any            reject  routes[0]  -\n"
    )


def test_single_call_settings_set_beside_a_routes_file_are_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "routes.yaml").write_text("default:\n  reject: true\n")
    monkeypatch.setenv("ULTRAVOX_AGENT_ID", "agent-1234")
    monkeypatch.setenv("ULTRAVOX_VOICE", "Mark")

    assert main(["check-config", "--routes-file", "routes.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "note: ULTRAVOX_AGENT_ID, ULTRAVOX_VOICE not used: ROUTES_FILE decides every call"
    )


def test_without_routes_file_the_environment_route_is_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ULTRAVOX_AGENT_ID", "agent-1234")
    monkeypatch.setenv("FALLBACK_DIAL_NUMBER", "+15005550100")

    assert main(["check-config"]) == 0
    assert capsys.readouterr().out == (
        "settings: ok\n"
        "routes: environment (ROUTES_FILE unset)\n"
        "NUMBER  PROVIDER  CALLER PREFIX  TARGET            ROUTE    FALLBACK\n"
        "any     any       any            agent agent-1234  default  dial +15005550100\n"
    )


def test_invalid_routes_file_exits_2_with_one_line_per_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "routes.yaml").write_text(
        "routes:\n"
        "  - name: sales\n    number: '+15005550001'\n    agent: {id: a, model: m}\n"
        "  - name: support\n    number: '555-0002'\n    reject: true\n"
    )

    assert main(["check-config", "--routes-file", "routes.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "routes.yaml: routes[0] (sales): agent.model: an agent call cannot set model: change it "
        "on the agent in Ultravox, or make this an inline route\n"
        "routes.yaml: routes[1] (support): number: '555-0002' is not a phone number in E.164 "
        "form (+, country code, number, such as +15005550100)\n"
    )


def test_missing_routes_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--routes-file", "nowhere.yaml"]) == 2
    assert capsys.readouterr() == ("", "nowhere.yaml: cannot be read (No such file or directory)\n")


def test_invalid_settings_exit_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ULTRAVOX_API_KEY")

    assert main(["check-config"]) == 2
    assert capsys.readouterr() == (
        "",
        "invalid configuration:\n  ULTRAVOX_API_KEY: is required: set it in the environment or "
        "in .env (see .env.example)\n",
    )


def test_command_line_exit_codes(tmp_path: Path) -> None:
    """The installed entry point as an operator runs it, in a process of its own."""
    (tmp_path / "good.yaml").write_text("default:\n  reject: true\n")
    (tmp_path / "bad.yaml").write_text("default:\n  reject: true\n  inline: {voice: Mark}\n")
    env = {
        key: value for key, value in os.environ.items() if key.lower() not in Settings.model_fields
    }
    env["ULTRAVOX_API_KEY"] = "test-key"
    env["TWILIO_AUTH_TOKEN"] = "twilio-test-token"
    command = [sys.executable, "-m", "app.cli", "check-config", "--routes-file"]

    good = subprocess.run(
        [*command, "good.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    bad = subprocess.run(
        [*command, "bad.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.splitlines()[-1] == "any     any       any            reject  default  -"
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == (
        "bad.yaml: default: set exactly one of agent, inline or reject (found inline and reject)\n"
    )
