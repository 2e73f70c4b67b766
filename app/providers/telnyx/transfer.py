"""Telnyx transfers: the live TeXML call is updated with a new TeXML document (which replaces its
<Connect><Stream> to Ultravox): a <Dial> whose action reports the outcome (cold), or a
<Conference> where the caller waits while the person, rung with the TeXML Calls API, hears a
<Gather> whisper (warm). The TeXML dialect is Twilio's, built with xml.etree."""

import xml.etree.ElementTree as ET
from urllib.parse import quote

import httpx

from app.calltypes import Answer, InboundCall, WebhookRequest
from app.providers.base import single_values
from app.providers.telnyx.options import TelnyxOptions
from app.providers.transferring import (
    BearerAuth,
    CallbackUrls,
    DialOutcome,
    ProviderAPI,
    Transfer,
    TransferDriver,
    TransferFailed,
)
from app.settings import ServiceSettings

TEXML = "text/xml"
ANSWERED = frozenset({"completed", "answered"})
# The person's call statuses that end it (a status callback may report others too).
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})
# Seconds the person has to press a key after the whisper.
ACCEPT_SECONDS = 8


def _texml(response: ET.Element) -> Answer:
    return Answer(ET.tostring(response, encoding="utf-8", xml_declaration=True), TEXML)


def _conference(parent: ET.Element, transfer: Transfer, **attributes: str) -> None:
    dial = ET.SubElement(parent, "Dial")
    conference = ET.SubElement(dial, "Conference", {"beep": "false", **attributes})
    conference.text = transfer.conference


class TelnyxTransfer(TransferDriver):
    name = "telnyx"

    def __init__(self, settings: ServiceSettings, http: httpx.AsyncClient) -> None:
        super().__init__(settings, http)
        options = TelnyxOptions.of(settings)
        key = options.telnyx_api_key.get_secret_value() if options.telnyx_api_key else ""
        base = f"{options.telnyx_api_url}/v2/texml/Accounts"
        self._api = ProviderAPI(http, self.name, base, BearerAuth(key))

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        return [] if TelnyxOptions.of(settings).telnyx_api_key else ["TELNYX_API_KEY"]

    def remember(self, call: InboundCall) -> dict[str, str]:
        # The TeXML Calls API addresses a call under its account (the webhook's AccountSid); a
        # call it places is handled by a TeXML application: the one that took this call.
        return {
            "account_sid": call.raw.get("AccountSid", ""),
            "connection_id": call.raw.get("ConnectionId", ""),
        }

    def _calls(self, transfer: Transfer) -> str:
        account = transfer.details.get("account_sid", "")
        if not account:
            raise TransferFailed(self.name, "the call's webhook carried no AccountSid")
        return f"/{quote(account, safe='')}/Calls"

    async def _update(self, transfer: Transfer, texml: bytes) -> None:
        path = f"{self._calls(transfer)}/{quote(transfer.provider_call_id, safe=':')}"
        await self._api.request("POST", path, json_body={"Texml": texml.decode()})

    async def start_cold(self, transfer: Transfer, urls: CallbackUrls) -> None:
        await self._update(transfer, self.dial_answer(transfer, urls).body)

    async def start_warm(self, transfer: Transfer, urls: CallbackUrls) -> str:
        application = transfer.details.get("connection_id", "")
        if not application:
            raise TransferFailed(self.name, "the call's webhook carried no ConnectionId")
        person = await self._api.request(
            "POST",
            self._calls(transfer),
            json_body={
                "ApplicationSid": application,
                "To": transfer.destination,
                "From": transfer.dialled_from,
                "Url": urls("whisper"),
                "UrlMethod": "POST",
                "Timeout": transfer.ring_timeout_seconds,
                "StatusCallback": urls("person"),
                "StatusCallbackMethod": "POST",
            },
        )
        # The Calls API's answer names no call (its documented fields are from, to, status), so
        # the person's call cannot be cancelled if the caller cannot be put on hold: the flow
        # then settles the transfer, and the whisper hangs up on the person instead.
        await self._update(transfer, self.hold_answer(transfer, urls).body)
        return str(person.get("call_sid") or person.get("sid") or "")

    async def return_caller(self, transfer: Transfer, stream: Answer, urls: CallbackUrls) -> None:
        await self._update(transfer, stream.body)

    def dial_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        response = ET.Element("Response")
        attributes = {
            "action": urls("dialed"),
            "method": "POST",
            "timeout": str(transfer.ring_timeout_seconds),
        }
        if transfer.caller_id:
            attributes["callerId"] = transfer.caller_id
        dial = ET.SubElement(response, "Dial", attributes)
        noun = "Sip" if transfer.destination.startswith(("sip:", "sips:")) else "Number"
        ET.SubElement(dial, noun).text = transfer.destination
        return _texml(response)

    def dial_outcome(self, request: WebhookRequest) -> DialOutcome | None:
        status = single_values(request.params()).get("DialCallStatus", "")
        return DialOutcome(status in ANSWERED, status or "unknown")

    def hangup_answer(self, message: str | None = None) -> Answer:
        response = ET.Element("Response")
        if message:
            ET.SubElement(response, "Say").text = message
        ET.SubElement(response, "Hangup")
        return _texml(response)

    def empty_answer(self) -> Answer:
        return _texml(ET.Element("Response"))

    def hold_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        response = ET.Element("Response")
        music = {"waitUrl": urls("music"), "waitMethod": "POST"} if self.hold_music_url else {}
        _conference(
            response,
            transfer,
            startConferenceOnEnter="false",
            endConferenceOnExit="true",
            **music,
        )
        return _texml(response)

    def music_answer(self) -> Answer:
        response = ET.Element("Response")
        ET.SubElement(response, "Play", {"loop": "0"}).text = self.hold_music_url
        return _texml(response)

    def whisper_answer(self, transfer: Transfer, urls: CallbackUrls, text: str) -> Answer:
        response = ET.Element("Response")
        gather = ET.SubElement(
            response,
            "Gather",
            {
                "action": urls("accept"),
                "method": "POST",
                "numDigits": "1",
                "timeout": str(ACCEPT_SECONDS),
            },
        )
        ET.SubElement(gather, "Say").text = text
        ET.SubElement(response, "Say").text = "No key was pressed. Goodbye."
        ET.SubElement(response, "Hangup")
        return _texml(response)

    def join_answer(self, transfer: Transfer) -> Answer:
        response = ET.Element("Response")
        _conference(response, transfer, startConferenceOnEnter="true", endConferenceOnExit="true")
        return _texml(response)

    def pressed(self, request: WebhookRequest) -> str:
        return single_values(request.params()).get("Digits", "")

    def person_status(self, request: WebhookRequest) -> str | None:
        status = single_values(request.params()).get("CallStatus", "")
        return status if status in FINAL_STATUSES else None
