"""Configuration is validated once, at start-up, with messages that name the setting."""

import pytest

from app.settings import ConfigError, load_settings
from tests.conftest import make_settings


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    monkeypatch.chdir("/")  # no .env file is read
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    return str(raised.value)


def test_missing_api_key_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ULTRAVOX_API_KEY", raising=False)
    assert config_error(monkeypatch) == (
        "invalid configuration:\n"
        "  ULTRAVOX_API_KEY: is required: set it in the environment or in .env (see .env.example)"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ULTRAVOX_CALL_OPTIONS": "{maxDuration: 1}"},
            "ULTRAVOX_CALL_OPTIONS: is not valid JSON (Expecting property name enclosed in double "
            "quotes at position 1)",
        ),
        (
            {"ULTRAVOX_CALL_OPTIONS": "[1]"},
            'ULTRAVOX_CALL_OPTIONS: must be a JSON object, e.g. {"maxDuration": "600s"}',
        ),
        (
            {"ULTRAVOX_CALL_OPTIONS": '{"medium": {"webRtc": {}}}'},
            "ULTRAVOX_CALL_OPTIONS: must not set medium: the bridge sets the medium from the "
            "provider (use firstSpeakerSettings instead of the deprecated firstSpeaker)",
        ),
        (
            {"ULTRAVOX_AGENT_ID": "a-1", "ULTRAVOX_CALL_OPTIONS": '{"systemPrompt": "x"}'},
            "settings: ULTRAVOX_CALL_OPTIONS sets systemPrompt, which an agent call cannot "
            "override; change them on the agent or unset ULTRAVOX_AGENT_ID (an agent call takes "
            "callbacks, firstSpeakerSettings, initialMessages, joinTimeout, maxDuration, "
            "metadata, recordingEnabled, templateContext, voice)",
        ),
        (
            {"FALLBACK_DIAL_NUMBER": "555-0100"},
            "FALLBACK_DIAL_NUMBER: must be a phone number in E.164 form, such as +14155550100",
        ),
        (
            {"PUBLIC_BASE_URL": "bridge.example.com"},
            "PUBLIC_BASE_URL: must be the URL the providers call, such as "
            "https://bridge.example.com (no query string)",
        ),
        (
            {"ULTRAVOX_DEADLINE_SECONDS": "20"},
            "ULTRAVOX_DEADLINE_SECONDS: Input should be less than or equal to 14",
        ),
        (
            {"TELNYX_STREAM_CODEC": "MP3"},
            "TELNYX_STREAM_CODEC: Input should be 'L16', 'PCMU', 'PCMA', 'G722', 'OPUS' or "
            "'AMR-WB'",
        ),
    ],
)
def test_invalid_setting_is_named_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    error = config_error(monkeypatch, ULTRAVOX_API_KEY="k", **env)
    assert error == f"invalid configuration:\n  {message}"


def test_secret_lists_are_comma_separated_and_trimmed() -> None:
    settings = make_settings(twilio_auth_token=" old , new ,", plivo_auth_token="")
    assert [s.get_secret_value() for s in settings.twilio_auth_token] == ["old", "new"]
    assert settings.plivo_auth_token == []


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    settings = make_settings(twilio_auth_token="very-secret-token")
    assert "very-secret-token" not in repr(settings)
    assert "test-ultravox-key" not in repr(settings)


def test_public_base_url_loses_its_trailing_slash() -> None:
    assert make_settings(public_base_url="https://b.example.com/").public_base_url == (
        "https://b.example.com"
    )
