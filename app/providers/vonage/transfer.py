"""Vonage transfers: the caller's leg is moved to a new NCCO with the Voice API (`PUT
/v1/calls/{uuid}`, action `transfer`, the NCCO inline), whose `connect` dials the target with a
synchronous event URL: when the dial fails, that URL's answer (an NCCO connecting a new agent)
takes over the caller's leg (cold). Warm: the person is called with the Voice API (`POST
/v1/calls`, answered by the `whisper` callback: a `talk` of the summary and an `input` reporting
the key at `accept`, its events at `person`), then the caller is moved into a named
`conversation` where they hear the hold music until the person, accepting, joins it.

Moving the caller does not end the relayed Ultravox call, so the tool's answer does
(`ends_agent_call`); the relay then closes the media socket."""

import contextlib
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
    TransferFailed,
)
from app.providers.vonage.application_jwt import ApplicationJWT
from app.providers.vonage.options import VonageOptions
from app.settings import ServiceSettings

NCCO = "application/json"
# `connect` statuses that end the dial without the person (cancelled: the caller hung up).
NOT_TAKEN = frozenset({"busy", "timeout", "unanswered", "rejected", "failed"})
# The person's call statuses that end it; a `completed` before the key press is a hang-up.
PERSON_ENDED = NOT_TAKEN | {"cancelled", "completed"}
# Seconds the person has to press a key after the whisper.
ACCEPT_SECONDS = 8


def _ncco(actions: list[dict[str, Any]]) -> Answer:
    return Answer(json.dumps(actions, separators=(",", ":")).encode(), NCCO)


class VonageTransfer(TransferDriver):
    name = "vonage"
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

    async def start_warm(self, transfer: Transfer, urls: CallbackUrls) -> str:
        person = await self._api.request(
            "POST",
            "",
            json_body={
                "to": [_endpoint(transfer.destination)],
                "from": {"type": "phone", "number": transfer.dialled_from.lstrip("+")},
                "answer_url": [urls("whisper")],
                "answer_method": "POST",
                "event_url": [urls("person")],
                "event_method": "POST",
                "ringing_timer": transfer.ring_timeout_seconds,
            },
        )
        person_call_id = person.get("uuid")
        if not isinstance(person_call_id, str) or not person_call_id:
            raise TransferFailed(self.name, "the Voice API's answer named no call uuid")
        try:
            await self._move_caller(transfer, json.loads(self.hold_answer(transfer, urls).body))
        except TransferFailed:
            # Nobody would be waiting: hang up on the person before they answer (if that
            # fails too, the flow has settled the transfer, and the whisper hangs up).
            with contextlib.suppress(TransferFailed):
                await self._api.request(
                    "PUT", f"/{quote(person_call_id, safe='')}", json_body={"action": "hangup"}
                )
            raise
        return person_call_id

    async def return_caller(self, transfer: Transfer, stream: Answer, urls: CallbackUrls) -> None:
        await self._move_caller(transfer, json.loads(stream.body))

    def _dial_actions(self, transfer: Transfer, urls: CallbackUrls) -> list[dict[str, Any]]:
        return [
            {
                "action": "connect",
                # One of the application's Vonage numbers: the caller ID, or the number called.
                "from": transfer.dialled_from.lstrip("+"),
                "timeout": transfer.ring_timeout_seconds,
                "eventType": "synchronous",
                "eventUrl": [urls("dialed")],
                "eventMethod": "POST",
                "endpoint": [_endpoint(transfer.destination)],
            }
        ]

    def dial_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        return _ncco(self._dial_actions(transfer, urls))

    def dial_outcome(self, request: WebhookRequest) -> DialOutcome | None:
        status = _event(request).get("status")
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

    def hold_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        # Not started until the person joins (startOnEnter), so the caller hears the music;
        # the caller hanging up ends the conversation.
        wait: dict[str, Any] = {
            "action": "conversation",
            "name": transfer.conference,
            "startOnEnter": False,
            "endOnExit": True,
        }
        if self.hold_music_url:
            wait["musicOnHoldUrl"] = [self.hold_music_url]
            return _ncco([wait])
        return _ncco([{"action": "talk", "text": "Please hold while I connect you."}, wait])

    def whisper_answer(self, transfer: Transfer, urls: CallbackUrls, text: str) -> Answer:
        return _ncco(
            [
                {"action": "talk", "text": text, "bargeIn": True},
                {
                    "action": "input",
                    "type": ["dtmf"],
                    "dtmf": {"maxDigits": 1, "timeOut": ACCEPT_SECONDS},
                    "eventUrl": [urls("accept")],
                    "eventMethod": "POST",
                },
            ]
        )

    def join_answer(self, transfer: Transfer) -> Answer:
        return _ncco(
            [
                {
                    "action": "conversation",
                    "name": transfer.conference,
                    "startOnEnter": True,
                    "endOnExit": True,
                }
            ]
        )

    def pressed(self, request: WebhookRequest) -> str:
        event = _event(request)
        dtmf = event.get("dtmf")
        # `dtmf: {"digits": "1", "timed_out": false}`; older accounts: `dtmf: "1"`.
        digits = dtmf.get("digits") if isinstance(dtmf, dict) else dtmf
        return digits if isinstance(digits, str) else ""

    def person_status(self, request: WebhookRequest) -> str | None:
        status = _event(request).get("status")
        return status if isinstance(status, str) and status in PERSON_ENDED else None


def _endpoint(destination: str) -> dict[str, str]:
    if destination.startswith(("sip:", "sips:")):
        return {"type": "sip", "uri": destination}
    # Vonage writes numbers in E.164 without the +.
    return {"type": "phone", "number": destination.lstrip("+")}


def _event(request: WebhookRequest) -> dict[str, Any]:
    try:
        event = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return event if isinstance(event, dict) else {}
