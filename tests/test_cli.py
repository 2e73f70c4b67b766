"""The `ultravox-bridge` command."""

import pytest

from app.cli import main


def test_serve_with_invalid_configuration_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    monkeypatch.delenv("ULTRAVOX_API_KEY", raising=False)
    assert main(["serve", "--port", "8123"]) == 2
    assert capsys.readouterr().err == (
        "invalid configuration:\n"
        "  ULTRAVOX_API_KEY: is required: set it in the environment or in .env (see .env.example)\n"
    )


def test_serve_rejects_a_port_out_of_range(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir("/")
    monkeypatch.setenv("ULTRAVOX_API_KEY", "k")
    assert main(["serve", "--port", "70000"]) == 2
    assert "PORT: Input should be less than or equal to 65535" in capsys.readouterr().err
