"""Configuration: one validated `Settings` object, read once at start-up from the environment
and `.env`. Code receives settings; it never reads `os.environ` itself."""

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_FALLBACK_MESSAGE = (
    "Sorry, our assistant cannot take your call right now. Please try again in a few minutes."
)
DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant answering a phone call. Greet the caller, keep your "
    "answers short and speak naturally."
)
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DURATION = re.compile(r"^\d+(\.\d+)?s$")
# The time between the callee answering and the provider's media reaching Ultravox.
OUTBOUND_CONNECT_MARGIN_SECONDS = 10
TWILIO_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
PLIVO_AUTH_ID = re.compile(r"^(MA|SA)[A-Z0-9]{18}$")
# An embedded SQLite file beside the working directory, so `make run` needs no database server.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/calls.db"

# Call fields an agent call cannot override, and fields the bridge itself decides.
AGENT_FORBIDDEN_FIELDS = frozenset({"systemPrompt", "model", "temperature", "selectedTools"})
BRIDGE_OWNED_FIELDS = frozenset({"medium", "firstSpeaker"})

SecretList = Annotated[list[SecretStr], NoDecode]


class ConfigError(Exception):
    """The configuration cannot run the service; the message names the setting and the fix."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    ultravox_api_key: SecretStr
    ultravox_api_url: str = "https://api.ultravox.ai/api"
    ultravox_agent_id: str | None = None
    ultravox_system_prompt: str = DEFAULT_SYSTEM_PROMPT
    ultravox_voice: str | None = None
    ultravox_model: str | None = None
    ultravox_call_options: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    ultravox_deadline_seconds: float = Field(default=8.0, gt=0, le=14)

    public_base_url: str | None = None
    verify_signatures: bool = True
    twilio_auth_token: SecretList = Field(default_factory=list)
    telnyx_public_key: SecretList = Field(default_factory=list)
    plivo_auth_token: SecretList = Field(default_factory=list)

    telnyx_stream_codec: Literal["L16", "PCMU", "PCMA", "G722", "OPUS", "AMR-WB"] = "L16"
    telnyx_stream_sampling_rate: Literal[8000, 16000, 24000, 48000] = 16000
    plivo_stream_content_type: Literal[
        "audio/x-l16;rate=16000", "audio/x-l16;rate=8000", "audio/x-mulaw;rate=8000"
    ] = "audio/x-l16;rate=16000"
    vonage_signature_secret: SecretList = Field(default_factory=list)
    vonage_sample_rate: Literal[8000, 16000] = 16000
    asterisk_token: SecretList = Field(default_factory=list)
    relay_media_idle_timeout: str | None = "45s"

    fallback_message: str = Field(default=DEFAULT_FALLBACK_MESSAGE, min_length=1)
    fallback_dial_number: str | None = None

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_phone_numbers: Literal["masked", "full"] = "masked"

    redis_url: SecretStr | None = None
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    dedupe_ttl_seconds: float = Field(default=600, gt=0)
    dedupe_lease_seconds: float = Field(default=15, gt=0)
    shutdown_drain_seconds: float = Field(default=5, ge=0, le=120)
    shutdown_relay_grace_seconds: float = Field(default=300, ge=0, le=3600)
    routes_file: Path | None = None
    bridge_api_tokens: SecretList = Field(default_factory=list)
    console_session_hours: float = Field(default=8, gt=0, le=168)
    outbound_join_timeout: str = "60s"
    outbound_ring_timeout_seconds: int = Field(default=45, ge=5, le=600)
    twilio_account_sid: str | None = None
    twilio_from_number: str | None = None
    telnyx_api_key: SecretStr | None = None
    telnyx_connection_id: str | None = None
    telnyx_from_number: str | None = None
    plivo_auth_id: str | None = None
    plivo_from_number: str | None = None

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    call_retention_days: int = Field(default=30, ge=0, le=3650)
    record_phone_numbers: Literal["masked", "full"] = "masked"
    ultravox_webhook_secrets: SecretList = Field(default_factory=list)
    call_events_url: str | None = None
    call_events_secret: SecretList = Field(default_factory=list)
    call_events_delay_seconds: float = Field(default=10, ge=0, le=3600)
    max_concurrent_calls: int | None = Field(default=None, ge=1)

    @field_validator(
        "twilio_auth_token",
        "telnyx_public_key",
        "plivo_auth_token",
        "vonage_signature_secret",
        "asterisk_token",
        "bridge_api_tokens",
        "ultravox_webhook_secrets",
        "call_events_secret",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("asterisk_token", "bridge_api_tokens", "call_events_secret")
    @classmethod
    def _long_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        if any(len(token.get_secret_value()) < 16 for token in tokens):
            raise ValueError(
                "each token must be at least 16 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return tokens

    @field_validator("relay_media_idle_timeout")
    @classmethod
    def _optional_duration(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not DURATION.match(value.strip()):
            raise ValueError('must be a duration in seconds such as "45s", or empty to omit it')
        return value.strip()

    @field_validator("telnyx_public_key")
    @classmethod
    def _ed25519_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            try:
                raw = base64.b64decode(key.get_secret_value(), validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    "each key must be the base64 of 32 raw bytes, as Telnyx Mission Control shows "
                    "under Keys & Credentials > Public Key"
                )
        return keys

    @field_validator("ultravox_call_options", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not valid JSON ({exc.msg} at position {exc.pos})") from exc
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object, e.g. {"maxDuration": "600s"}')
        return value

    @field_validator("ultravox_call_options")
    @classmethod
    def _no_bridge_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(BRIDGE_OWNED_FIELDS & value.keys())
        if owned:
            raise ValueError(
                f"must not set {', '.join(owned)}: the bridge sets the medium from the provider "
                "(use firstSpeakerSettings instead of the deprecated firstSpeaker)"
            )
        return value

    @field_validator("public_base_url")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError(
                "must be the URL the providers call, such as https://bridge.example.com "
                "(no query string)"
            )
        return value

    @field_validator("ultravox_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://\S+$", value):
            raise ValueError("must be an http(s) URL such as https://api.ultravox.ai/api")
        return value.rstrip("/")

    @field_validator("fallback_dial_number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not E164.match(value.strip()):
            raise ValueError("must be a phone number in E.164 form, such as +14155550100")
        return value.strip()

    @field_validator("ultravox_agent_id", "ultravox_voice", "ultravox_model")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("routes_file", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("outbound_join_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not DURATION.match(value.strip()):
            raise ValueError('must be a duration in seconds as Ultravox writes it, such as "60s"')
        return value.strip()

    @field_validator("twilio_from_number", "telnyx_from_number", "plivo_from_number")
    @classmethod
    def _outbound_e164(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not E164.match(value.strip()):
            raise ValueError("must be your number in E.164 form, such as +15005550006")
        return value.strip()

    @field_validator("twilio_account_sid", "telnyx_connection_id", "plivo_auth_id")
    @classmethod
    def _outbound_blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("twilio_account_sid")
    @classmethod
    def _twilio_account_sid(cls, value: str | None) -> str | None:
        if value is not None and not TWILIO_ACCOUNT_SID.match(value):
            raise ValueError("must be AC followed by 32 hex digits (Twilio Console > Account info)")
        return value

    @field_validator("plivo_auth_id")
    @classmethod
    def _plivo_auth_id(cls, value: str | None) -> str | None:
        if value is not None and not PLIVO_AUTH_ID.match(value):
            raise ValueError(
                "must be MA or SA followed by 18 characters (Plivo Console > Overview)"
            )
        return value

    @field_validator("telnyx_api_key")
    @classmethod
    def _blank_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @property
    def outbound_join_timeout_seconds(self) -> float:
        return float(self.outbound_join_timeout.removesuffix("s"))

    @model_validator(mode="after")
    def _join_covers_ringing(self) -> "Settings":
        # Ultravox ends a call nobody joined after joinTimeout: the callee must answer before.
        margin = self.outbound_join_timeout_seconds - self.outbound_ring_timeout_seconds
        if margin < OUTBOUND_CONNECT_MARGIN_SECONDS:
            raise ValueError(
                f"OUTBOUND_JOIN_TIMEOUT ({self.outbound_join_timeout}) must exceed "
                f"OUTBOUND_RING_TIMEOUT_SECONDS ({self.outbound_ring_timeout_seconds}) by at "
                f"least {OUTBOUND_CONNECT_MARGIN_SECONDS}s, or a callee who answers late "
                "reaches a call Ultravox has already ended"
            )
        return self

    @model_validator(mode="after")
    def _agent_fields(self) -> "Settings":
        if self.ultravox_agent_id:
            bad = sorted(AGENT_FORBIDDEN_FIELDS & self.ultravox_call_options.keys())
            if bad:
                raise ValueError(
                    f"ULTRAVOX_CALL_OPTIONS sets {', '.join(bad)}, which an agent call cannot "
                    "override; change them on the agent or unset ULTRAVOX_AGENT_ID"
                )
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value().strip() or DEFAULT_DATABASE_URL
        # The usual spellings of a PostgreSQL URL mean the async driver the service uses.
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+asyncpg://" + url.removeprefix(plain)
        if url.startswith("sqlite+aiosqlite://") and url.rstrip("/") in (
            "sqlite+aiosqlite:",
            "sqlite+aiosqlite:///:memory:",
        ):
            # Each connection would see a database of its own, and every record is lost at exit.
            raise ValueError("must name a file, such as sqlite+aiosqlite:///data/calls.db")
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must be sqlite+aiosqlite:///path/to/calls.db (an embedded file) or "
                "postgresql+asyncpg://user:password@host:5432/database"
            )
        return SecretStr(url)

    @field_validator("call_events_url")
    @classmethod
    def _call_events_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^https?://[^/?#\s]+\S*$", value.strip()):
            raise ValueError(
                "must be the http(s) URL of your endpoint, such as https://x.test/calls"
            )
        return value.strip()

    @model_validator(mode="after")
    def _call_events_signed(self) -> "Settings":
        if self.call_events_url and not self.call_events_secret:
            raise ValueError(
                "CALL_EVENTS_URL needs CALL_EVENTS_SECRET (16+ characters) so your endpoint can "
                "tell the bridge's summaries from forged ones; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not re.match(r"^(redis|rediss|unix)://\S+$", value.get_secret_value().strip()):
            raise ValueError("must be a Redis URL such as redis://redis:6379/0 (or rediss://)")
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _lease_outlives_deadline(self) -> "Settings":
        if self.dedupe_lease_seconds <= self.ultravox_deadline_seconds:
            raise ValueError(
                f"DEDUPE_LEASE_SECONDS ({self.dedupe_lease_seconds:g}) must be longer than "
                f"ULTRAVOX_DEADLINE_SECONDS ({self.ultravox_deadline_seconds:g}), or a repeat "
                "could create a second call while the first is still being created"
            )
        return self


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, turning pydantic's errors into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required: set it in the environment or in .env (see .env.example)"
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)
