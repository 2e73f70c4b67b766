"""What `POST /calls` takes and gives: the request body, validated, and the placed call."""

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.phone import written_e164


class OutboundCallRequest(BaseModel):
    """The body of `POST /calls`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    provider: str = Field(min_length=1)
    to: str
    from_: str | None = Field(default=None, alias="from")
    route: str | None = Field(default=None, min_length=1)
    agent_id: str | None = Field(default=None, alias="agentId", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    template_context: dict[str, Any] = Field(default_factory=dict, alias="templateContext")
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("to", "from_")
    @classmethod
    def _phone_number(cls, value: str | None) -> str | None:
        # The number is dialled as given: it must carry its + and country code.
        return None if value is None else written_e164(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(key for key in value if key.startswith("ultravox."))
        if reserved:
            raise ValueError(f"keys starting with 'ultravox.' are Ultravox's: {reserved}")
        return value

    @model_validator(mode="after")
    def _one_override(self) -> "OutboundCallRequest":
        if self.route and self.agent_id:
            raise ValueError("give route or agentId, not both")
        return self


@dataclass(frozen=True)
class PlacedCall:
    """A call the provider is dialling, with its Ultravox call waiting for the answer."""

    provider: str
    to_number: str
    from_number: str
    ultravox_call_id: str
    provider_call_id: str
    state: str = "dialing"
