"""Vonage's settings: the secrets that verify its webhook JWTs, the media socket's rate, and the
application whose private key signs the Voice API requests that transfer a live call."""

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from app.settings import ApiUrl, OptionalText, ProviderOptions, SecretList, int_from_text

APPLICATION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class VonageOptions(ProviderOptions):
    vonage_signature_secret: SecretList = Field(default_factory=list)
    vonage_sample_rate: Literal[8000, 16000] = 16000
    vonage_application_id: OptionalText = None
    vonage_private_key: SecretStr | None = None
    vonage_api_url: ApiUrl = "https://api.nexmo.com"

    @field_validator("vonage_sample_rate", mode="before")
    @classmethod
    def _vonage_rate_from_text(cls, value: Any) -> Any:
        return int_from_text(value)

    @field_validator("vonage_application_id")
    @classmethod
    def _application_id(cls, value: str | None) -> str | None:
        if value is not None and not APPLICATION_ID.match(value.lower()):
            raise ValueError(
                "must be the application's id, a UUID such as "
                "aaaaaaaa-bbbb-cccc-dddd-0123456789ab (Vonage Dashboard > Applications)"
            )
        return value.lower() if value is not None else None

    @field_validator("vonage_private_key")
    @classmethod
    def _rsa_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from app.providers.vonage.application_jwt import load_private_key

        # One line in an environment variable: `\n` stands for the PEM's line breaks.
        pem = value.get_secret_value().strip().replace("\\n", "\n")
        load_private_key(pem)  # ValueError, naming the fix, unless an RSA private key
        return SecretStr(pem)
