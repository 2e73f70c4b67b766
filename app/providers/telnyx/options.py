"""Telnyx's settings: the public keys that verify its webhooks, whether GET webhooks are taken,
the TeXML stream's codec, and the Call Control application that places outbound calls."""

import base64
import binascii
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from app.settings import CallerNumber, OptionalText, ProviderOptions, SecretList, int_from_text

# Telnyx streams these codecs at one rate only: G.711 (PCMU, PCMA) is narrowband, 8 kHz;
# AMR-WB is wideband, 16 kHz. L16, OPUS and G722 are left to Telnyx's list of rates.
TELNYX_CODEC_RATES = {"PCMU": 8000, "PCMA": 8000, "AMR-WB": 16000}


class TelnyxOptions(ProviderOptions):
    telnyx_public_key: SecretList = Field(default_factory=list)
    telnyx_allow_get: bool = False
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

    @field_validator("telnyx_stream_sampling_rate", mode="before")
    @classmethod
    def _telnyx_rate_from_text(cls, value: Any) -> Any:
        return int_from_text(value)

    @model_validator(mode="after")
    def _telnyx_codec_rate(self) -> Self:
        rate = TELNYX_CODEC_RATES.get(self.telnyx_stream_codec)
        if rate is not None and self.telnyx_stream_sampling_rate != rate:
            raise ValueError(
                f"TELNYX_STREAM_CODEC={self.telnyx_stream_codec} streams at {rate} Hz only, not "
                f"TELNYX_STREAM_SAMPLING_RATE={self.telnyx_stream_sampling_rate}: Telnyx could "
                f"not stream any call. Set TELNYX_STREAM_SAMPLING_RATE={rate}, or the codec L16"
            )
        return self

    @field_validator("telnyx_api_key")
    @classmethod
    def _blank_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None
