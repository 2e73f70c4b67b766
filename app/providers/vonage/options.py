"""Vonage's settings: the secrets that verify its webhook JWTs, and the media socket's rate."""

from typing import Literal

from pydantic import Field

from app.settings import ProviderOptions, SecretList


class VonageOptions(ProviderOptions):
    vonage_signature_secret: SecretList = Field(default_factory=list)
    vonage_sample_rate: Literal[8000, 16000] = 16000
