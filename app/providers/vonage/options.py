"""Vonage's settings: the secrets that verify its webhook JWTs, and the media socket's rate."""

from typing import Any, Literal

from pydantic import Field, field_validator

from app.settings import ProviderOptions, SecretList, int_from_text


class VonageOptions(ProviderOptions):
    vonage_signature_secret: SecretList = Field(default_factory=list)
    vonage_sample_rate: Literal[8000, 16000] = 16000

    @field_validator("vonage_sample_rate", mode="before")
    @classmethod
    def _vonage_rate_from_text(cls, value: Any) -> Any:
        return int_from_text(value)
