"""Telnyx's settings: the public keys that verify its webhooks, the TeXML stream's codec, and the
Call Control application that places outbound calls."""

import base64
import binascii
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from app.settings import CallerNumber, OptionalText, ProviderOptions, SecretList


class TelnyxOptions(ProviderOptions):
    telnyx_public_key: SecretList = Field(default_factory=list)
    telnyx_stream_codec: Literal["L16", "PCMU", "PCMA", "G722", "OPUS", "AMR-WB"] = "L16"
    telnyx_stream_sampling_rate: Literal[8000, 16000, 24000, 48000] = 16000
    telnyx_api_key: SecretStr | None = None
    telnyx_connection_id: OptionalText = None
    telnyx_from_number: CallerNumber = None

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

    @field_validator("telnyx_api_key")
    @classmethod
    def _blank_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None
