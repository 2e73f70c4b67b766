"""Asterisk's settings: the tokens a PBX presents on the media socket."""

from pydantic import Field, SecretStr, field_validator

from app.settings import ProviderOptions, SecretList, long_tokens


class AsteriskOptions(ProviderOptions):
    asterisk_token: SecretList = Field(default_factory=list)

    @field_validator("asterisk_token")
    @classmethod
    def _long_asterisk_tokens(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        return long_tokens(tokens)
