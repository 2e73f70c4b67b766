"""Plivo's settings: the auth token that verifies its webhooks (and, with the auth ID, places
outbound calls) and the stream's content type."""

import re
from typing import Literal

from pydantic import Field, field_validator

from app.settings import CallerNumber, OptionalText, ProviderOptions, SecretList

PLIVO_AUTH_ID = re.compile(r"^(MA|SA)[A-Z0-9]{18}$")


class PlivoOptions(ProviderOptions):
    plivo_auth_token: SecretList = Field(default_factory=list)
    plivo_stream_content_type: Literal[
        "audio/x-l16;rate=16000", "audio/x-l16;rate=8000", "audio/x-mulaw;rate=8000"
    ] = "audio/x-l16;rate=16000"
    plivo_auth_id: OptionalText = None
    plivo_from_number: CallerNumber = None

    @field_validator("plivo_auth_id")
    @classmethod
    def _plivo_auth_id(cls, value: str | None) -> str | None:
        if value is not None and not PLIVO_AUTH_ID.match(value):
            raise ValueError(
                "must be MA or SA followed by 18 characters (Plivo Console > Overview)"
            )
        return value
