"""Exotel outbound calls: `Calls/connect` dials the callee and, once answered, runs the flow
that holds the Voicebot applet. Exotel runs a fixed flow URL, not one per call, so the call's
pending answer is named in `CustomField`, which Exotel passes to the flow's applets; the
Voicebot applet's request (to `/exotel/outbound/<token>`) brings it back."""

from concurrent.futures import Executor
from typing import Any

import httpx

from app.http_transport import CappedTransport
from app.providers.dialing import (
    PROVIDER_REQUEST_TIMEOUT_SECONDS,
    Dialed,
    Dialer,
    DialNotSent,
    DialRefused,
    DialUncertain,
    OutboundCall,
    plain_reason,
)
from app.providers.exotel.numbers import national
from app.providers.exotel.options import ExotelOptions
from app.settings import ServiceSettings

# The flow (App) a call runs once answered: the only kind of Url Calls/connect takes.
FLOW_URL = "http://my.exotel.com/{account_sid}/exoml/start_voice/{app_id}"


def exotel_error_message(response: httpx.Response) -> str:
    """The `RestException.Message` of Exotel's error answer, or its status line."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = body.get("RestException") if isinstance(body, dict) else None
    message = error.get("Message") if isinstance(error, dict) else None
    return str(message) if message else f"HTTP {response.status_code}"


class ExotelDialer(Dialer):
    name = "exotel"
    # Exotel fetches the stream from this service once the callee answers (the Voicebot
    # applet), so the joinUrl waits in the store under a reference.
    needs_answer_url = True

    def __init__(self, settings: ServiceSettings, executor: Executor) -> None:
        super().__init__(settings, executor)
        options = ExotelOptions.of(settings)
        account_sid = options.exotel_account_sid or ""
        token = options.exotel_api_token.get_secret_value() if options.exotel_api_token else ""
        self._url = (
            f"https://{options.exotel_subdomain}/v1/Accounts/{account_sid}/Calls/connect.json"
        )
        self._flow_url = FLOW_URL.format(account_sid=account_sid, app_id=options.exotel_app_id)
        self._calling_code = options.exotel_calling_code
        self._status_callback = (
            f"{settings.public_base_url}/{self.name}/events/{options.exotel_url_tokens[0].get_secret_value()}"
            if settings.public_base_url and options.exotel_url_tokens
            else None
        )
        # No retries: a repeated request after a lost answer would ring the callee twice.
        self._client = httpx.AsyncClient(
            auth=(options.exotel_api_key or "", token),
            timeout=PROVIDER_REQUEST_TIMEOUT_SECONDS,
            transport=CappedTransport(httpx.AsyncHTTPTransport()),
        )

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = ExotelOptions.of(settings)
        needed = {
            "EXOTEL_ACCOUNT_SID": options.exotel_account_sid,
            "EXOTEL_API_KEY": options.exotel_api_key,
            "EXOTEL_API_TOKEN": options.exotel_api_token,
            "EXOTEL_APP_ID": options.exotel_app_id,
            # The flow's Voicebot URL carries one; without it the answer cannot be fetched.
            "EXOTEL_URL_TOKENS": options.exotel_url_tokens,
        }
        return [name for name, value in needed.items() if not value]

    @staticmethod
    def default_from(settings: ServiceSettings) -> str | None:
        return ExotelOptions.of(settings).exotel_from_number

    async def dial(self, call: OutboundCall) -> Dialed:
        if call.answer_url is None:
            raise ValueError("an Exotel call needs its pending answer's reference")
        form = {
            "From": national(call.to_number, self._calling_code),
            "CallerId": national(call.from_number, self._calling_code),
            "Url": self._flow_url,
            "CallType": "trans",
            "TimeOut": str(call.ring_timeout_seconds),
            # The reference is the answer URL's last segment (/exotel/outbound/<reference>).
            "CustomField": call.answer_url.rsplit("/", 1)[-1],
        }
        if self._status_callback is not None:
            form["StatusCallback"] = self._status_callback
        try:
            response = await self._client.post(self._url, data=form)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise DialNotSent(self.name, f"cannot reach Exotel: {plain_reason(exc)}") from exc
        except httpx.HTTPError as exc:
            raise DialUncertain(self.name, f"no answer from Exotel: {plain_reason(exc)}") from exc
        if response.status_code >= 300:
            raise DialRefused(self.name, exotel_error_message(response), response.status_code)
        try:
            sid = response.json()["Call"]["Sid"]
        except (ValueError, KeyError, TypeError):
            sid = None
        if not isinstance(sid, str) or not sid:
            raise DialUncertain(self.name, "Exotel accepted the call without a Call Sid")
        return Dialed(sid)

    async def aclose(self) -> None:
        await self._client.aclose()
