"""The answers kept for providers that fetch a placed call's instructions once the callee picks
up: stored under an unguessable single-use reference, so any replica can answer."""

import json
from dataclasses import dataclass

PENDING_KEY_PREFIX = "outbound:pending:"


@dataclass(frozen=True)
class PendingAnswer:
    """What an answer-URL request needs to stream an answered call: kept in the store between
    dialling and answering, so any replica can answer."""

    ultravox_call_id: str
    join_url: str

    def dumps(self) -> str:
        return json.dumps({"ultravoxCallId": self.ultravox_call_id, "joinUrl": self.join_url})

    @classmethod
    def loads(cls, value: str) -> "PendingAnswer":
        data = json.loads(value)
        return cls(ultravox_call_id=data["ultravoxCallId"], join_url=data["joinUrl"])


def pending_key(provider: str, reference: str) -> str:
    return f"{PENDING_KEY_PREFIX}{provider}:{reference}"
