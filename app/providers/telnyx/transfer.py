"""Telnyx transfers: the live TeXML call is updated with a new TeXML document (which replaces its
<Connect><Stream> to Ultravox), a <Dial> whose action reports the outcome. Cold only for now."""

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


def _texml(response: ET.Element) -> Answer:
    return Answer(ET.tostring(response, encoding="utf-8", xml_declaration=True), TEXML)


class TelnyxTransfer(TransferDriver):
    name = "telnyx"
    modes = frozenset({"cold"})

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
        # The TeXML Calls API addresses a call under its account (the webhook's AccountSid).
        return {"account_sid": call.raw.get("AccountSid", "")}

    async def _update(self, transfer: Transfer, texml: bytes) -> None:
        account = transfer.details.get("account_sid", "")
        if not account:
            raise TransferFailed(self.name, "the call's webhook carried no AccountSid")
        path = f"/{quote(account, safe='')}/Calls/{quote(transfer.provider_call_id, safe=':')}"
        await self._api.request("POST", path, json_body={"Texml": texml.decode()})

    async def start_cold(self, transfer: Transfer, urls: CallbackUrls) -> None:
        await self._update(transfer, self.dial_answer(transfer, urls).body)

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
