"""Plivo transfers: the Transfer API moves the caller's leg to one of this service's URLs (which
answer with <Dial> or <Conference> XML), and the person of a warm transfer is rung with the
Call API, answering with a <GetInput> whisper."""

import httpx

from app.calltypes import Answer, WebhookRequest
from app.providers.base import single_values
from app.providers.plivo.answers import plivo_xml, xml_answer
from app.providers.plivo.options import PlivoOptions
from app.providers.transferring import (
    CallbackUrls,
    DialOutcome,
    ProviderAPI,
    Transfer,
    TransferDriver,
    TransferFailed,
)
from app.settings import ServiceSettings

# Seconds the person has to press a key after the whisper.
ACCEPT_SECONDS = 8


class PlivoTransfer(TransferDriver):
    name = "plivo"

    def __init__(self, settings: ServiceSettings, http: httpx.AsyncClient) -> None:
        super().__init__(settings, http)
        options = PlivoOptions.of(settings)
        auth_id = options.plivo_auth_id or ""
        token = options.plivo_auth_token[0].get_secret_value()
        base = f"{options.plivo_api_url}/v1/Account/{auth_id}"
        self._api = ProviderAPI(http, self.name, base, httpx.BasicAuth(auth_id, token))

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = PlivoOptions.of(settings)
        missing = [] if options.plivo_auth_id else ["PLIVO_AUTH_ID"]
        return missing + ([] if options.plivo_auth_token else ["PLIVO_AUTH_TOKEN"])

    async def _move_caller(self, transfer: Transfer, url: str) -> None:
        call = transfer.provider_call_id
        await self._api.request(
            "POST",
            f"/Call/{call}/",
            json_body={"legs": "aleg", "aleg_url": url, "aleg_method": "POST"},
        )
        # Unconfirmed that the transfer ends the caller's <Stream>: end it explicitly, so the
        # first agent cannot go on listening. 404: the transfer had ended it already.
        await self._api.request("DELETE", f"/Call/{call}/Stream/", ok=(200, 202, 204, 404))

    async def start_cold(self, transfer: Transfer, urls: CallbackUrls) -> None:
        await self._move_caller(transfer, urls("dial"))

    async def start_warm(self, transfer: Transfer, urls: CallbackUrls) -> str:
        person = await self._api.request(
            "POST",
            "/Call/",
            json_body={
                "from": transfer.dialled_from.lstrip("+"),
                "to": transfer.destination.lstrip("+"),
                "answer_url": urls("whisper"),
                "answer_method": "POST",
                "hangup_url": urls("person"),
                "hangup_method": "POST",
                "ring_timeout": transfer.ring_timeout_seconds,
            },
        )
        request_uuid = str(person.get("request_uuid") or "")
        if not request_uuid:
            raise TransferFailed(self.name, "the Call API answered without a request_uuid")
        try:
            await self._move_caller(transfer, urls("hold"))
        except TransferFailed:
            # The caller is still with the agent: stop ringing the person.
            await self._api.request("DELETE", f"/Request/{request_uuid}/", ok=(204, 404))
            raise
        return request_uuid

    async def return_caller(self, transfer: Transfer, stream: Answer, urls: CallbackUrls) -> None:
        # Plivo fetches the new instructions: the `agent` callback serves `stream` once.
        await self._api.request(
            "POST",
            f"/Call/{transfer.provider_call_id}/",
            json_body={"legs": "aleg", "aleg_url": urls("agent"), "aleg_method": "POST"},
        )

    def dial_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        plivoxml = plivo_xml()
        dial = plivoxml.DialElement(
            action=urls("dialed"),
            method="POST",
            timeout=transfer.ring_timeout_seconds,
            caller_id=transfer.caller_id.lstrip("+") if transfer.caller_id else None,
            redirect=True,
        )
        if transfer.destination.startswith(("sip:", "sips:")):
            dial.add(plivoxml.UserElement(transfer.destination))
        else:
            dial.add(plivoxml.NumberElement(transfer.destination.lstrip("+")))
        response = plivoxml.ResponseElement()
        response.add(dial)
        return xml_answer(response)

    def dial_outcome(self, request: WebhookRequest) -> DialOutcome | None:
        status = single_values(request.params()).get("DialStatus", "")
        return DialOutcome(status == "completed", status or "unknown")

    def hangup_answer(self, message: str | None = None) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        if message:
            response.add(plivoxml.SpeakElement(message))
        response.add(plivoxml.HangupElement())
        return xml_answer(response)

    def empty_answer(self) -> Answer:
        return xml_answer(plivo_xml().ResponseElement())

    def hold_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        response.add(
            plivoxml.ConferenceElement(
                transfer.conference,
                start_conference_on_enter=False,
                end_conference_on_exit=True,
                wait_sound=urls("music") if self.hold_music_url else None,
            )
        )
        return xml_answer(response)

    def music_answer(self) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        response.add(plivoxml.PlayElement(self.hold_music_url, loop=0))
        return xml_answer(response)

    def whisper_answer(self, transfer: Transfer, urls: CallbackUrls, text: str) -> Answer:
        plivoxml = plivo_xml()
        get_input = plivoxml.GetInputElement(
            action=urls("accept"),
            method="POST",
            input_type="dtmf",
            num_digits=1,
            digit_end_timeout=ACCEPT_SECONDS,
            redirect=True,
        )
        get_input.add(plivoxml.SpeakElement(text))
        response = plivoxml.ResponseElement()
        response.add(get_input)
        response.add(plivoxml.SpeakElement("No key was pressed. Goodbye."))
        response.add(plivoxml.HangupElement())
        return xml_answer(response)

    def join_answer(self, transfer: Transfer) -> Answer:
        plivoxml = plivo_xml()
        response = plivoxml.ResponseElement()
        response.add(
            plivoxml.ConferenceElement(
                transfer.conference, start_conference_on_enter=True, end_conference_on_exit=True
            )
        )
        return xml_answer(response)

    def pressed(self, request: WebhookRequest) -> str:
        return single_values(request.params()).get("Digits", "")

    def person_status(self, request: WebhookRequest) -> str | None:
        return single_values(request.params()).get("CallStatus", "")
