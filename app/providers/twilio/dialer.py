"""Twilio outbound calls: the REST API's Calls resource with inline TwiML that streams the
answered call to Ultravox."""

from concurrent.futures import Executor
from typing import Any

from app.providers.dialing import (
    PROVIDER_REQUEST_TIMEOUT_SECONDS,
    Dialed,
    Dialer,
    DialNotSent,
    DialRefused,
    DialUncertain,
    OutboundCall,
    PerThreadClients,
    never_sent,
    plain_reason,
)
from app.providers.twilio.answers import stream_twiml
from app.providers.twilio.options import TwilioOptions
from app.settings import ServiceSettings


class TwilioDialer(Dialer):
    name = "twilio"

    def __init__(self, settings: ServiceSettings, executor: Executor) -> None:
        super().__init__(settings, executor)
        options = TwilioOptions.of(settings)
        # Imported here, not at module level: only services that place calls pay for it.
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        account_sid = options.twilio_account_sid or ""
        auth_token = options.twilio_auth_token[0].get_secret_value()

        from app.providers.capped_requests import CappedAdapter

        def new_client() -> Any:
            http_client = TwilioHttpClient(timeout=PROVIDER_REQUEST_TIMEOUT_SECONDS)
            http_client.session.mount("https://", CappedAdapter())
            # An empty environment: the SDK would otherwise read TWILIO_* variables itself.
            return Client(account_sid, auth_token, http_client=http_client, environment={})

        self._clients = PerThreadClients(
            new_client, lambda client: client.http_client.session.close()
        )

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = TwilioOptions.of(settings)
        missing = [] if options.twilio_account_sid else ["TWILIO_ACCOUNT_SID"]
        return missing + ([] if options.twilio_auth_token else ["TWILIO_AUTH_TOKEN"])

    @staticmethod
    def default_from(settings: ServiceSettings) -> str | None:
        options = TwilioOptions.of(settings)
        return options.twilio_from_number

    async def dial(self, call: OutboundCall) -> Dialed:
        return await self.run_blocking(lambda: self._create(call))

    def _create(self, call: OutboundCall) -> Dialed:
        from requests import RequestException
        from twilio.base.exceptions import TwilioRestException

        # Twilio reports the final status (`completed` with CallDuration) to the status URL.
        status: dict[str, Any] = {"status_callback": call.status_url} if call.status_url else {}
        try:
            created = self._clients.get().calls.create(
                to=call.to_number,
                from_=call.from_number,
                twiml=stream_twiml(call.join_url),
                timeout=call.ring_timeout_seconds,
                **status,
            )
        except TwilioRestException as exc:
            message = f"{exc.msg} (Twilio error {exc.code})" if exc.code else str(exc.msg)
            raise DialRefused(self.name, message, exc.status) from exc
        except RequestException as exc:
            if never_sent(exc):
                raise DialNotSent(self.name, f"cannot reach Twilio: {plain_reason(exc)}") from exc
            raise DialUncertain(self.name, f"no answer from Twilio: {plain_reason(exc)}") from exc
        return Dialed(str(created.sid))

    async def aclose(self) -> None:
        self._clients.close_all()
