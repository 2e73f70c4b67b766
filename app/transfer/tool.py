"""The transfer tool the agent sees: an Ultravox temporary HTTP tool served by this service,
and the per-call credential Ultravox presents when it calls it.

Ultravox assigns the call id only when the call is created, after the tool (with its
`authTokens`) is already part of the request. So each Ultravox call gets a random session id,
sent back by Ultravox as a static parameter, and the credential is an HMAC of that session with
the server's secret. The endpoint checks the HMAC before touching the store (a stranger costs one
HMAC), then checks that the session is the one recorded for the Ultravox call id in the request:
a credential is valid for that one call only."""

import base64
import hashlib
import hmac
import secrets
from typing import Any

from app.routing.transfer import TransferPlan

TOOL_NAME = "transferCall"
TOKEN_HEADER = "X-Bridge-Transfer-Token"
# The key of the security requirement; `authTokens` supplies its value per call.
SECURITY_KEY = "bridgeTransferToken"
# Ultravox allows tools 40 s at most; the provider requests behind a transfer take a few seconds.
TOOL_TIMEOUT_SECONDS = 20
MAX_REASON_CHARS = 300
MAX_SUMMARY_CHARS = 1000


class ToolRefused(Exception):
    """A tool request refused: not from Ultravox, not for a call this service made, or not a
    tool request at all. `result` names the refusal in the JSON body the caller of the tool
    reads (`app/api/errors.py`)."""

    def __init__(self, status_code: int, result: str) -> None:
        super().__init__(result)
        self.status_code = status_code
        self.result = result


def new_session() -> str:
    """A session id for one Ultravox call: random, so it cannot be guessed or replayed."""
    return secrets.token_urlsafe(18)


def mint_token(secret: bytes, session: str) -> str:
    """The credential Ultravox sends for the call that holds `session`."""
    digest = hmac.new(secret, b"transfer-tool:" + session.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_matches(secret: bytes, session: str, presented: str) -> bool:
    """Whether `presented` is the credential of `session`, compared in constant time."""
    expected = mint_token(secret, session).encode()
    return hmac.compare_digest(expected, presented.encode("utf-8", "replace"))


def tool_definition(plan: TransferPlan, url: str, session: str, token: str) -> dict[str, Any]:
    """The `selectedTools` entry that lets the agent hand the caller to one of `plan`'s
    targets."""
    choices = "; ".join(f"{t.name}: {t.description}" for t in plan.targets.values())
    return {
        "temporaryTool": {
            "modelToolName": TOOL_NAME,
            "description": (
                "Transfer the caller to a person. First tell the caller you are transferring "
                "them, then call this tool. If the result says the target is closed or the "
                f"transfer failed, tell the caller and keep helping. Targets: {choices}."
            ),
            "dynamicParameters": [
                {
                    "name": "target",
                    "location": "PARAMETER_LOCATION_BODY",
                    "schema": {
                        "type": "string",
                        "enum": list(plan.targets),
                        "description": "Who to transfer the caller to.",
                    },
                    "required": True,
                },
                {
                    "name": "reason",
                    "location": "PARAMETER_LOCATION_BODY",
                    "schema": {
                        "type": "string",
                        "maxLength": MAX_REASON_CHARS,
                        "description": "Why the caller needs a person, in one short sentence.",
                    },
                    "required": True,
                },
                {
                    "name": "summary",
                    "location": "PARAMETER_LOCATION_BODY",
                    "schema": {
                        "type": "string",
                        "maxLength": MAX_SUMMARY_CHARS,
                        "description": (
                            "What the person taking over should know: the caller's name, "
                            "request and anything already done, in two or three sentences."
                        ),
                    },
                    "required": True,
                },
            ],
            "staticParameters": [
                {"name": "session", "location": "PARAMETER_LOCATION_BODY", "value": session}
            ],
            "automaticParameters": [
                {
                    "name": "callId",
                    "location": "PARAMETER_LOCATION_BODY",
                    "knownValue": "KNOWN_PARAM_CALL_ID",
                }
            ],
            "requirements": {
                "httpSecurityOptions": {
                    "options": [
                        {"requirements": {SECURITY_KEY: {"headerApiKey": {"name": TOKEN_HEADER}}}}
                    ]
                }
            },
            "timeout": f"{TOOL_TIMEOUT_SECONDS}s",
            "http": {"baseUrlPattern": url, "httpMethod": "POST"},
        },
        "authTokens": {SECURITY_KEY: token},
    }
