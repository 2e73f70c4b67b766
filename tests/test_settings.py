"""Configuration is validated once, at start-up, with messages that name the setting."""

import pytest

from app.config import load_settings
from app.providers import PROVIDERS
from app.settings import ConfigError, ServiceSettings
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


PROVIDER_ENVIRONMENT = {
    "TWILIO_AUTH_TOKEN": "twilio-old,twilio-new",
    "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "TWILIO_FROM_NUMBER": "+15005550006",
    "TELNYX_PUBLIC_KEY": "AQ" + "A" * 41 + "=",
    "TELNYX_STREAM_CODEC": "PCMU",
    "TELNYX_STREAM_SAMPLING_RATE": "8000",
    "TELNYX_API_KEY": "telnyx-api-key",
    "TELNYX_CONNECTION_ID": "1234567890",
    "TELNYX_FROM_NUMBER": "+15005550007",
    "PLIVO_AUTH_TOKEN": "plivo-token",
    "PLIVO_STREAM_CONTENT_TYPE": "audio/x-mulaw;rate=8000",
    "PLIVO_AUTH_ID": "MA" + "B" * 18,
    "PLIVO_FROM_NUMBER": "+15005550008",
    "VONAGE_SIGNATURE_SECRET": "vonage-secret",
    "VONAGE_SAMPLE_RATE": "8000",
    "ASTERISK_TOKEN": "asterisk-token-0123456789",
}


def test_each_providers_options_are_read_from_its_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir("/")  # no .env file is read
    monkeypatch.setenv("ULTRAVOX_API_KEY", "k")
    for name, value in PROVIDER_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    read = {name: getattr(settings, name.lower()) for name in PROVIDER_ENVIRONMENT}
    secrets = {name: value for name, value in read.items() if isinstance(value, list)}
    assert {name: [s.get_secret_value() for s in v] for name, v in secrets.items()} == {
        "TWILIO_AUTH_TOKEN": ["twilio-old", "twilio-new"],
        "TELNYX_PUBLIC_KEY": ["AQ" + "A" * 41 + "="],
        "PLIVO_AUTH_TOKEN": ["plivo-token"],
        "VONAGE_SIGNATURE_SECRET": ["vonage-secret"],
        "ASTERISK_TOKEN": ["asterisk-token-0123456789"],
    }
    assert read["TELNYX_API_KEY"].get_secret_value() == "telnyx-api-key"
    plain = {
        name: v for name, v in read.items() if name not in secrets and name != "TELNYX_API_KEY"
    }
    assert plain == {
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_FROM_NUMBER": "+15005550006",
        "TELNYX_STREAM_CODEC": "PCMU",
        "TELNYX_STREAM_SAMPLING_RATE": 8000,
        "TELNYX_CONNECTION_ID": "1234567890",
        "TELNYX_FROM_NUMBER": "+15005550007",
        "PLIVO_STREAM_CONTENT_TYPE": "audio/x-mulaw;rate=8000",
        "PLIVO_AUTH_ID": "MA" + "B" * 18,
        "PLIVO_FROM_NUMBER": "+15005550008",
        "VONAGE_SAMPLE_RATE": 8000,
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TWILIO_ACCOUNT_SID": "AC123"},
            "TWILIO_ACCOUNT_SID: must be AC followed by 32 hex digits (Twilio Console > "
            "Account info)",
        ),
        (
            {"PLIVO_AUTH_ID": "XX123"},
            "PLIVO_AUTH_ID: must be MA or SA followed by 18 characters (Plivo Console > Overview)",
        ),
        (
            {"TELNYX_PUBLIC_KEY": "not-a-key"},
            "TELNYX_PUBLIC_KEY: each key must be the base64 of 32 raw bytes, as Telnyx Mission "
            "Control shows under Keys & Credentials > Public Key",
        ),
        (
            {"ASTERISK_TOKEN": "short"},
            "ASTERISK_TOKEN: each token must be at least 16 characters; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
        ),
        (
            {"PLIVO_FROM_NUMBER": "5550100"},
            "PLIVO_FROM_NUMBER: must be your number in E.164 form, such as +15005550006",
        ),
    ],
)
def test_a_providers_invalid_option_is_named_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    error = config_error(monkeypatch, ULTRAVOX_API_KEY="k", **env)
    assert error == f"invalid configuration:\n  {message}"


def test_blank_provider_options_are_unset() -> None:
    settings = make_settings(twilio_account_sid=" ", telnyx_api_key="", plivo_from_number="")
    assert (settings.twilio_account_sid, settings.telnyx_api_key, settings.plivo_from_number) == (
        None,
        None,
        None,
    )


def test_provider_options_do_not_shadow_each_other_or_the_services() -> None:
    # Settings composes them by inheritance: a field or validator named twice would silently
    # replace the other one.
    models = [ServiceSettings, *(spec.options for spec in PROVIDERS)]
    seen: dict[str, str] = {}
    for model in models:
        decorators = model.__pydantic_decorators__
        names = {
            *model.__annotations__,
            *decorators.field_validators,
            *decorators.model_validators,
        }
        for name in names:
            assert name not in seen, f"{model.__name__}.{name} shadows {seen[name]}.{name}"
            seen[name] = model.__name__
