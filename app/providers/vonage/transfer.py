"""Vonage transfers: the caller's leg is moved to a new NCCO with the Voice API (`PUT
/v1/calls/{uuid}`, action `transfer`, the NCCO inline), whose `connect` dials the target with a
synchronous event URL: when the dial fails, that URL's answer (an NCCO connecting a new agent)
takes over the caller's leg. Cold only.

Moving the caller does not end the relayed Ultravox call, so the tool's answer does
(`ends_agent_call`); the relay then closes the media socket."""

import json
from typing import Any
from urllib.parse import quote

import httpx

from app.calltypes import Answer, WebhookRequest
from app.providers.transferring import (
    CallbackUrls,
    DialOutcome,
    ProviderAPI,
    Transfer,
    TransferDriver,
)
from app.providers.vonage.application_jwt import ApplicationJWT
from app.providers.vonage.options import VonageOptions
from app.settings import ServiceSettings

NCCO = "application/json"
# `connect` statuses that end the dial without the person (cancelled: the caller hung up).
NOT_TAKEN = frozenset({"busy", "timeout", "unanswered", "rejected", "failed"})


def _ncco(actions: list[dict[str, Any]]) -> Answer:
    return Answer(json.dumps(actions, separators=(",", ":")).encode(), NCCO)


class VonageTransfer(TransferDriver):
    name = "vonage"
    modes = frozenset({"cold"})
    ends_agent_call = True

    def __init__(self, settings: ServiceSettings, http: httpx.AsyncClient) -> None:
        super().__init__(settings, http)
        options = VonageOptions.of(settings)
        key = options.vonage_private_key.get_secret_value() if options.vonage_private_key else ""
        auth = ApplicationJWT(options.vonage_application_id or "", key)
        self._api = ProviderAPI(http, self.name, f"{options.vonage_api_url}/v1/calls", auth)

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = VonageOptions.of(settings)
        missing = [] if options.vonage_application_id else ["VONAGE_APPLICATION_ID"]
        return missing + ([] if options.vonage_private_key else ["VONAGE_PRIVATE_KEY"])

    async def _move_caller(self, transfer: Transfer, actions: list[dict[str, Any]]) -> None:
        await self._api.request(
            "PUT",
            f"/{quote(transfer.provider_call_id, safe='')}",
            json_body={"action": "transfer", "destination": {"type": "ncco", "ncco": actions}},
        )

    async def start_cold(self, transfer: Transfer, urls: CallbackUrls) -> None:
        await self._move_caller(transfer, self._dial_actions(transfer, urls))

    async def return_caller(self, transfer: Transfer, stream: Answer, urls: CallbackUrls) -> None:
        await self._move_caller(transfer, json.loads(stream.body))

    def _dial_actions(self, transfer: Transfer, urls: CallbackUrls) -> list[dict[str, Any]]:
        if transfer.destination.startswith(("sip:", "sips:")):
            endpoint = {"type": "sip", "uri": transfer.destination}
        else:
            # Vonage writes numbers in E.164 without the +.
            endpoint = {"type": "phone", "number": transfer.destination.lstrip("+")}
        return [
            {
                "action": "connect",
                # One of the application's Vonage numbers: the caller ID, or the number called.
                "from": transfer.dialled_from.lstrip("+"),
                "timeout": transfer.ring_timeout_seconds,
                "eventType": "synchronous",
                "eventUrl": [urls("dialed")],
                "eventMethod": "POST",
                "endpoint": [endpoint],
            }
        ]

    def dial_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        return _ncco(self._dial_actions(transfer, urls))

    def dial_outcome(self, request: WebhookRequest) -> DialOutcome | None:
        try:
            event = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        status = event.get("status") if isinstance(event, dict) else None
        if status == "answered":
            return DialOutcome(True, status)
        if status in NOT_TAKEN:
            return DialOutcome(False, str(status))
        return None  # started, ringing, completed, cancelled: nothing to decide

    def hangup_answer(self, message: str | None = None) -> Answer:
        # An NCCO whose actions run out ends the call.
        return _ncco([{"action": "talk", "text": message}] if message else [])

    def empty_answer(self) -> Answer:
        # Events that change nothing: an empty body, which overrides no NCCO.
        return Answer(b"", NCCO)

    def connected_answer(self) -> Answer:
        # Sent when the person answers, not when the dial is over: the call goes on.
        return self.empty_answer()
