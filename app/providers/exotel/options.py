"""Exotel's settings: the secrets in the Voicebot URL, who may call it and how often, how its
national numbers are read, and the account that places outbound calls."""

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from app.providers.exotel.numbers import calling_code
from app.settings import CallerNumber, OptionalText, ProviderOptions, SecretList

# A URL token is a path segment, shown in Exotel's dashboard and in proxies' logs of the path:
# longer than an API token, and of characters that need no escaping.
MIN_TOKEN_CHARS = 32
URL_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# The API hosts: api.exotel.com (Singapore) and api.in.exotel.com (Mumbai).
API_HOST = re.compile(r"(?:[a-z0-9-]+\.)*exotel\.com")
EXOTEL_ACCOUNT_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    networks: list[Network] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network: list Exotel's addresses (ask "
                "Exotel support for them), comma-separated, such as 203.0.113.0/24"
            ) from None
    return networks


class ExotelOptions(ProviderOptions):
    exotel_url_tokens: SecretList = Field(default_factory=list)
    exotel_allowed_ips: Annotated[list[Network], NoDecode, BeforeValidator(_networks)] = Field(
        default_factory=list
    )
    exotel_default_country: str = "IN"
    exotel_rate_limit_per_second: float = Field(default=5, gt=0, le=1000)
    exotel_rate_limit_burst: int = Field(default=20, ge=1, le=10000)
    exotel_account_sid: OptionalText = None
    exotel_api_key: OptionalText = None
    exotel_api_token: SecretStr | None = None
    exotel_subdomain: str = "api.exotel.com"
    exotel_app_id: OptionalText = None
    exotel_from_number: CallerNumber = None

    @field_validator("exotel_url_tokens")
    @classmethod
    def _url_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        for token in tokens:
            text = token.get_secret_value()
            if len(text) < MIN_TOKEN_CHARS or not URL_TOKEN.fullmatch(text):
                raise ValueError(
                    f"each token must be at least {MIN_TOKEN_CHARS} characters of letters, "
                    "digits, - and _; generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return tokens

    @field_validator("exotel_default_country")
    @classmethod
    def _country(cls, value: str) -> str:
        calling_code(value)
        return value.strip().upper()

    @field_validator("exotel_subdomain")
    @classmethod
    def _subdomain(cls, value: str) -> str:
        host = value.strip().lower()
        if not API_HOST.fullmatch(host):
            raise ValueError(
                "must be Exotel's API host: api.exotel.com (Singapore) or api.in.exotel.com "
                "(Mumbai), as your dashboard's API settings show"
            )
        return host

    @field_validator("exotel_account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        if value is not None and not EXOTEL_ACCOUNT_SID.fullmatch(value):
            raise ValueError("must be your account SID (Exotel dashboard > API settings)")
        return value

    @field_validator("exotel_app_id")
    @classmethod
    def _app_id(cls, value: str | None) -> str | None:
        if value is not None and not (value.isascii() and value.isdigit()):
            raise ValueError(
                "must be the numeric id of the flow (App) holding the Voicebot applet, the "
                "last part of its start_voice URL"
            )
        return value

    @property
    def exotel_calling_code(self) -> str:
        return calling_code(self.exotel_default_country)
