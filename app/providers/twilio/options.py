"""Twilio's settings: the auth token that verifies its webhooks, and the account that places
outbound calls."""

import re

from pydantic import Field, field_validator

from app.settings import CallerNumber, OptionalText, ProviderOptions, SecretList

TWILIO_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


class TwilioOptions(ProviderOptions):
    twilio_auth_token: SecretList = Field(default_factory=list)
    twilio_account_sid: OptionalText = None
    twilio_from_number: CallerNumber = None

    @field_validator("twilio_account_sid")
    @classmethod
    def _twilio_account_sid(cls, value: str | None) -> str | None:
        if value is not None and not TWILIO_ACCOUNT_SID.match(value):
            raise ValueError("must be AC followed by 32 hex digits (Twilio Console > Account info)")
        return value
