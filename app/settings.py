"""Configuration: the service's own settings, and the pieces each provider's options model is
made of. `app/config.py` composes them with every registered provider's options into the one
`Settings` object, read once at start-up from the environment and `.env`. Code receives
settings; it never reads `os.environ` itself."""

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.phone import E164, is_ascii_digits
from app.ultravox import AGENT_CALL_FIELDS

DEFAULT_FALLBACK_MESSAGE = (
    "Sorry, our assistant cannot take your call right now. Please try again in a few minutes."
)
DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant answering a phone call. Greet the caller, keep your "
    "answers short and speak naturally."
)
DURATION = re.compile(r"^[0-9]+(\.[0-9]+)?s$")
# The time between the callee answering and the provider's media reaching Ultravox.
OUTBOUND_CONNECT_MARGIN_SECONDS = 10
# A browser's Origin header: scheme, host, optional port; nothing after.
WEB_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# An embedded SQLite file beside the working directory, so `make run` needs no database server.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/calls.db"

# Call fields the bridge itself decides.
BRIDGE_OWNED_FIELDS = frozenset({"medium", "firstSpeaker"})


class ConfigError(Exception):
    """The configuration cannot run the service; the message names the setting and the fix."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _empty_is_none(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _caller_number(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not E164.match(value.strip()):
        raise ValueError("must be your number in E.164 form, such as +15005550006")
    return value.strip()


def long_tokens(tokens: list[SecretStr]) -> list[SecretStr]:
    """`tokens`, unless one is too short to be a secret nobody guesses."""
    if any(len(token.get_secret_value()) < 16 for token in tokens):
        raise ValueError(
            "each token must be at least 16 characters; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return tokens


def int_from_text(value: Any) -> Any:
    """`value` as a number when it is text of ASCII digits, for a field typed `Literal[int]`:
    the environment and `.env` give text, which never equals a Literal's int."""
    if isinstance(value, str) and is_ascii_digits(value.strip()):
        return int(value.strip())
    return value


# Secrets given comma-separated, so that a new one can be added before the old one is removed.
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(_split_list)]
# Text where an empty value means unset.
OptionalText = Annotated[str | None, AfterValidator(_empty_is_none)]
# One of your numbers, the caller of outbound calls: E.164, or empty for unset.
CallerNumber = Annotated[str | None, AfterValidator(_caller_number)]


def _api_origin(value: str) -> str:
    if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value.strip()):
        raise ValueError(
            "must be the provider's REST API origin, such as https://api.twilio.com "
            "(a regional endpoint works too)"
        )
    return value.strip().rstrip("/")


# A provider's REST API base URL (public by default; regional endpoints and test stand-ins).
ApiUrl = Annotated[str, AfterValidator(_api_origin)]


class ServiceSettings(BaseSettings):
    """The service's own settings: Ultravox, webhooks, fallback, server, store, routing and
    outbound calls. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)
    # The providers whose options the composed `Settings` carries (app/config.py).
    provider_names: ClassVar[tuple[str, ...]] = ()

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
    relay_media_idle_timeout: str | None = "45s"

    fallback_message: str = Field(default=DEFAULT_FALLBACK_MESSAGE, min_length=1)
    fallback_dial_number: str | None = None

    host: str = "0.0.0.0"
    forwarded_allow_ips: str = "127.0.0.1,::1"
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_phone_numbers: Literal["masked", "full"] = "masked"

    redis_url: SecretStr | None = None
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    dedupe_ttl_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    dedupe_join_window_seconds: float = Field(default=30, gt=0)
    dedupe_lease_seconds: float = Field(default=15, gt=0)
    shutdown_drain_seconds: float = Field(default=5, ge=0, le=120)
    shutdown_relay_grace_seconds: float = Field(default=300, ge=0, le=3600)
    http_head_timeout_seconds: float = Field(default=10, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=10, gt=0, le=300)
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    http_max_connections: int = Field(default=1000, ge=16)
    routes_file: Path | None = None
    bridge_api_tokens: SecretList = Field(default_factory=list)
    console_session_hours: float = Field(default=8, gt=0, le=168)
    outbound_join_timeout: str = "60s"
    outbound_ring_timeout_seconds: int = Field(default=45, ge=5, le=600)
    transfer_token_secret: SecretStr | None = None
    transfer_hold_music_url: str | None = None

    # Web calls (POST /web/calls, /talk/<route>): see the README's "Calls from a browser".
    web_allowed_origins: Annotated[list[str], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=list
    )
    web_ip_burst: int = Field(default=3, ge=1, le=1000)
    web_ip_calls_per_hour: float = Field(default=12, gt=0, le=100_000)
    web_global_burst: int = Field(default=20, ge=1, le=100_000)
    web_global_calls_per_hour: float = Field(default=240, gt=0, le=1_000_000)
    web_max_concurrent_calls: int = Field(default=3, ge=1, le=10_000)
    web_max_duration: str = "300s"
    web_connect_sources: str = "wss: https:"
    web_call_secret: SecretStr | None = None
    web_token_max_ttl_seconds: int = Field(default=600, ge=10, le=86_400)

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    call_retention_days: int = Field(default=30, ge=0, le=3650)
    record_phone_numbers: Literal["masked", "full"] = "masked"
    ultravox_webhook_secrets: SecretList = Field(default_factory=list)
    call_events_url: str | None = None
    call_events_secret: SecretList = Field(default_factory=list)
    call_events_delay_seconds: float = Field(default=10, ge=0, le=3600)
    max_concurrent_calls: int | None = Field(default=None, ge=1)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: Any) -> Any:
        # uvicorn's --log-level is lower case; accept either.
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("web_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins = []
        for origin in value:
            if not WEB_ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme and host (and port) only, such "
                    "as https://www.example.com, comma-separated"
                )
            origins.append(origin.lower())
        return origins

    @field_validator("web_connect_sources")
    @classmethod
    def _csp_sources(cls, value: str) -> str:
        if not value.strip() or any(ch in value for ch in ";,'\"\n\r"):
            raise ValueError(
                "must be space-separated Content-Security-Policy sources such as "
                "'wss: https:' or 'wss://*.example.com'"
            )
        return " ".join(value.split())

    @field_validator("web_max_duration")
    @classmethod
    def _web_duration(cls, value: str) -> str:
        if not DURATION.match(value.strip()):
            raise ValueError('must be a duration in seconds as Ultravox writes it, such as "300s"')
        return value.strip()

    @field_validator("web_call_secret")
    @classmethod
    def _web_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value()) < 32:
            raise ValueError(
                "must be at least 32 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return value

    @field_validator("bridge_api_tokens", "call_events_secret")
    @classmethod
    def _long_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        return long_tokens(tokens)

    @field_validator("relay_media_idle_timeout")
    @classmethod
    def _optional_duration(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not DURATION.match(value.strip()):
            raise ValueError('must be a duration in seconds such as "45s", or empty to omit it')
        return value.strip()

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

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network: list the addresses of your "
                    "proxies, comma-separated, such as 10.0.0.0/8,127.0.0.1 (* trusts anyone)"
                ) from None
        if not entries:
            raise ValueError("must name at least one address, such as 127.0.0.1")
        return ",".join(entries)

    @field_validator("ultravox_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://\S+$", value):
            raise ValueError("must be an http(s) URL such as https://api.ultravox.ai/api")
        return value.rstrip("/")

    @field_validator("transfer_hold_music_url")
    @classmethod
    def _hold_music(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^https?://\S+$", value.strip()):
            raise ValueError("must be an http(s) URL of an audio file (mp3 or wav)")
        return value.strip()

    @field_validator("transfer_token_secret")
    @classmethod
    def _token_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < 32:
            raise ValueError(
                "must be at least 32 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return SecretStr(value.get_secret_value().strip())

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

    @property
    def web_max_duration_seconds(self) -> float:
        return float(self.web_max_duration.removesuffix("s"))

    @property
    def outbound_join_timeout_seconds(self) -> float:
        return float(self.outbound_join_timeout.removesuffix("s"))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Every rule across settings is checked, the service's and each provider's options',
        # so that one run names every mistake (one line each).
        problems = [
            problem
            for cls in type(self).__mro__
            if "consistency_problems" in cls.__dict__
            for problem in cls.__dict__["consistency_problems"](self)
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def consistency_problems(self) -> list[str]:
        """What is wrong across several of the service's own settings, one line each."""
        checks = (
            self._join_covers_ringing,
            self._agent_fields,
            self._lease_outlives_deadline,
            self._join_window_within_ttl,
            self._workers_share_a_store,
        )
        return [problem for check in checks if (problem := check()) is not None]

    def _join_covers_ringing(self) -> str | None:
        # Ultravox ends a call nobody joined after joinTimeout: the callee must answer before.
        margin = self.outbound_join_timeout_seconds - self.outbound_ring_timeout_seconds
        if margin < OUTBOUND_CONNECT_MARGIN_SECONDS:
            return (
                f"OUTBOUND_JOIN_TIMEOUT ({self.outbound_join_timeout}) must exceed "
                f"OUTBOUND_RING_TIMEOUT_SECONDS ({self.outbound_ring_timeout_seconds}) by at "
                f"least {OUTBOUND_CONNECT_MARGIN_SECONDS}s, or a callee who answers late "
                "reaches a call Ultravox has already ended"
            )
        return None

    def _agent_fields(self) -> str | None:
        if self.ultravox_agent_id:
            bad = sorted(self.ultravox_call_options.keys() - AGENT_CALL_FIELDS)
            if bad:
                return (
                    f"ULTRAVOX_CALL_OPTIONS sets {', '.join(bad)}, which an agent call cannot "
                    "override; change them on the agent or unset ULTRAVOX_AGENT_ID (an agent "
                    f"call takes {', '.join(sorted(AGENT_CALL_FIELDS))})"
                )
        return None

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
    def _call_events_signed(self) -> Self:
        if self.call_events_url and not self.call_events_secret:
            raise ValueError(
                "CALL_EVENTS_URL needs CALL_EVENTS_SECRET (16+ characters) so your endpoint can "
                "tell the bridge's summaries from forged ones; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self

    @field_validator("max_concurrent_calls", mode="before")
    @classmethod
    def _no_limit_when_empty(cls, value: Any) -> Any:
        # `MAX_CONCURRENT_CALLS=`, as `.env.example` shows it, means no limit.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not re.match(r"^(redis|rediss|unix)://\S+$", value.get_secret_value().strip()):
            raise ValueError("must be a Redis URL such as redis://redis:6379/0 (or rediss://)")
        return SecretStr(value.get_secret_value().strip())

    def _workers_share_a_store(self) -> str | None:
        if self.web_concurrency > 1 and self.redis_url is None:
            return (
                f"WEB_CONCURRENCY ({self.web_concurrency}, or serve --workers) needs REDIS_URL: "
                "each worker process keeps its own records, so a webhook repeated to another "
                "worker would start a second Ultravox call; set REDIS_URL (redis://host:6379/0) "
                "or run one worker"
            )
        return None

    def _lease_outlives_deadline(self) -> str | None:
        if self.dedupe_lease_seconds <= self.ultravox_deadline_seconds:
            return (
                f"DEDUPE_LEASE_SECONDS ({self.dedupe_lease_seconds:g}) must be longer than "
                f"ULTRAVOX_DEADLINE_SECONDS ({self.ultravox_deadline_seconds:g}), or a repeat "
                "could create a second call while the first is still being created"
            )
        return None

    def _join_window_within_ttl(self) -> str | None:
        if self.dedupe_join_window_seconds > self.dedupe_ttl_seconds:
            return (
                f"DEDUPE_JOIN_WINDOW_SECONDS ({self.dedupe_join_window_seconds:g}) must not "
                f"exceed DEDUPE_TTL_SECONDS ({self.dedupe_ttl_seconds:g}): once the record of "
                "a call is gone, a repeat creates a new call"
            )
        return None


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required: set it in the environment or in .env (see .env.example)"
        lines.extend(f"  {name}: {line}" for line in message.split("\n"))
    return "\n".join(lines)


class ProviderOptions(BaseModel):
    """One provider's settings, in its own folder (`app/providers/<name>/options.py`). The
    service's `Settings` (app/config.py) carries every registered provider's fields beside its
    own, so each is read from its upper-case environment variable like any other setting."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of(cls, settings: ServiceSettings) -> Self:
        """This provider's options among the service's settings."""
        if not isinstance(settings, cls):
            raise TypeError(
                f"{type(settings).__name__} lacks {cls.__name__}: load the settings with "
                "app.config.load_settings, which composes every provider's options"
            )
        return settings
