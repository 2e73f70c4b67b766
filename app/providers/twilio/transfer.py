"""Twilio transfers: the live call is updated with new TwiML (which ends its <Connect><Stream>
to Ultravox), a <Dial> for cold transfers and a <Conference> for warm ones, where the person is
rung with the Calls API first and hears a <Gather> whisper."""

import httpx
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from app.calltypes import Answer, WebhookRequest
from app.providers.base import single_values
from app.providers.transferring import (
    CallbackUrls,
    DialOutcome,
    ProviderAPI,
    Transfer,
    TransferDriver,
    TransferFailed,
)
from app.providers.twilio.options import TwilioOptions
from app.settings import ServiceSettings

TWIML = "text/xml"
# DialCallStatus values that mean the person took the call.
ANSWERED = frozenset({"completed", "answered"})
# How long the person has to press a key after the whisper.
ACCEPT_SECONDS = 8


def _twiml(response: VoiceResponse) -> Answer:
    return Answer(str(response.to_xml()).encode(), TWIML)


def _dial_target(dial: Dial, transfer: Transfer) -> None:
    if transfer.destination.startswith(("sip:", "sips:")):
        dial.sip(transfer.destination)
    else:
        dial.number(transfer.destination)


class TwilioTransfer(TransferDriver):
    name = "twilio"
    transfers_outbound = True  # the dialer's call SID is the call the Calls API updates

    def __init__(self, settings: ServiceSettings, http: httpx.AsyncClient) -> None:
        super().__init__(settings, http)
        options = TwilioOptions.of(settings)
        sid = options.twilio_account_sid or ""
        token = options.twilio_auth_token[0].get_secret_value()
        base = f"{options.twilio_api_url}/2010-04-01/Accounts/{sid}"
        self._api = ProviderAPI(http, self.name, base, httpx.BasicAuth(sid, token))

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = TwilioOptions.of(settings)
        missing = [] if options.twilio_account_sid else ["TWILIO_ACCOUNT_SID"]
        return missing + ([] if options.twilio_auth_token else ["TWILIO_AUTH_TOKEN"])

    async def _update(self, call_sid: str, fields: dict[str, str]) -> None:
        await self._api.request("POST", f"/Calls/{call_sid}.json", form=fields)

    async def start_cold(self, transfer: Transfer, urls: CallbackUrls) -> None:
        twiml = self.dial_answer(transfer, urls).body.decode()
        await self._update(transfer.provider_call_id, {"Twiml": twiml})

    async def start_warm(self, transfer: Transfer, urls: CallbackUrls) -> str:
        person = await self._api.request(
            "POST",
            "/Calls.json",
            form={
                "To": transfer.destination,
                "From": transfer.dialled_from,
                "Url": urls("whisper"),
                "Method": "POST",
                "Timeout": str(transfer.ring_timeout_seconds),
                "StatusCallback": urls("person"),
                "StatusCallbackMethod": "POST",
            },
        )
        person_sid = str(person.get("sid") or "")
        if not person_sid:
            raise TransferFailed(self.name, "the Calls API answered without a call sid")
        try:
            hold = self.hold_answer(transfer, urls).body.decode()
            await self._update(transfer.provider_call_id, {"Twiml": hold})
        except TransferFailed:
            # The caller is still with the agent: nobody must be rung for an empty room.
            await self._update(person_sid, {"Status": "canceled"})
            raise
        return person_sid

    async def return_caller(self, transfer: Transfer, stream: Answer, urls: CallbackUrls) -> None:
        await self._update(transfer.provider_call_id, {"Twiml": stream.body.decode()})

    def dial_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        response = VoiceResponse()
        dial = Dial(
            action=urls("dialed"),
            method="POST",
            timeout=transfer.ring_timeout_seconds,
            caller_id=transfer.caller_id,
        )
        _dial_target(dial, transfer)
        response.append(dial)
        return _twiml(response)

    def dial_outcome(self, request: WebhookRequest) -> DialOutcome | None:
        status = single_values(request.params()).get("DialCallStatus", "")
        return DialOutcome(status in ANSWERED, status or "unknown")

    def hangup_answer(self, message: str | None = None) -> Answer:
        response = VoiceResponse()
        if message:
            response.say(message)
        response.hangup()
        return _twiml(response)

    def empty_answer(self) -> Answer:
        return _twiml(VoiceResponse())

    def hold_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        response = VoiceResponse()
        dial = Dial()
        dial.conference(
            transfer.conference,
            start_conference_on_enter=False,
            end_conference_on_exit=True,
            beep=False,
            wait_url=urls("music") if self.hold_music_url else None,
            wait_method="POST",
        )
        response.append(dial)
        return _twiml(response)

    def music_answer(self) -> Answer:
        response = VoiceResponse()
        response.play(self.hold_music_url, loop=0)
        return _twiml(response)

    def whisper_answer(self, transfer: Transfer, urls: CallbackUrls, text: str) -> Answer:
        response = VoiceResponse()
        gather = Gather(num_digits=1, action=urls("accept"), method="POST", timeout=ACCEPT_SECONDS)
        gather.say(text)
        response.append(gather)
        response.say("No key was pressed. Goodbye.")
        response.hangup()
        return _twiml(response)

    def join_answer(self, transfer: Transfer) -> Answer:
        response = VoiceResponse()
        dial = Dial()
        dial.conference(
            transfer.conference,
            start_conference_on_enter=True,
            end_conference_on_exit=True,
            beep=False,
        )
        response.append(dial)
        return _twiml(response)

    def pressed(self, request: WebhookRequest) -> str:
        return single_values(request.params()).get("Digits", "")

    def person_status(self, request: WebhookRequest) -> str | None:
        return single_values(request.params()).get("CallStatus", "")
