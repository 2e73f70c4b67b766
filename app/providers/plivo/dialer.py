"""Plivo outbound calls: the REST API's Call resource with an answer URL on this service, which
answers the Stream XML once the callee picks up. Plivo's SDK blocks (requests), so its requests
run on the outbound executor."""

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
from app.providers.plivo.options import PlivoOptions
from app.settings import ServiceSettings


class PlivoDialer(Dialer):
    name = "plivo"
    needs_answer_url = True

    def __init__(self, settings: ServiceSettings, executor: Executor) -> None:
        super().__init__(settings, executor)
        options = PlivoOptions.of(settings)
        import plivo  # only when outbound calling is configured: the SDK loads requests too

        auth_id = options.plivo_auth_id or ""
        auth_token = options.plivo_auth_token[0].get_secret_value()

        from app.providers.capped_requests import CappedAdapter

        def new_client() -> Any:
            client = plivo.RestClient(auth_id, auth_token, timeout=PROVIDER_REQUEST_TIMEOUT_SECONDS)
            client.session.mount("https://", CappedAdapter())
            return client

        self._clients = PerThreadClients(new_client, lambda client: client.session.close())

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = PlivoOptions.of(settings)
        missing = [] if options.plivo_auth_id else ["PLIVO_AUTH_ID"]
        missing += [] if options.plivo_auth_token else ["PLIVO_AUTH_TOKEN"]
        # Plivo fetches the call's instructions from this service once the callee answers.
        return missing + ([] if settings.public_base_url else ["PUBLIC_BASE_URL"])

    @staticmethod
    def default_from(settings: ServiceSettings) -> str | None:
        options = PlivoOptions.of(settings)
        return options.plivo_from_number

    async def dial(self, call: OutboundCall) -> Dialed:
        if call.answer_url is None:
            raise ValueError("a Plivo call needs the answer URL on this service")
        answer_url = call.answer_url
        return await self.run_blocking(lambda: self._create(call, answer_url))

    def _create(self, call: OutboundCall, answer_url: str) -> Dialed:
        from plivo import exceptions
        from requests import RequestException

        # Plivo reports the call's end (Duration, HangupCause) to the hangup URL.
        status: dict[str, Any] = (
            {"hangup_url": call.status_url, "hangup_method": "POST"} if call.status_url else {}
        )
        try:
            created = self._clients.get().calls.create(
                from_=call.from_number.lstrip("+"),
                to_=call.to_number.lstrip("+"),
                answer_url=answer_url,
                answer_method="POST",
                ring_timeout=call.ring_timeout_seconds,
                **status,
            )
        except exceptions.PlivoRestError as exc:
            raise DialRefused(self.name, str(exc)) from exc
        except RequestException as exc:
            if never_sent(exc):
                raise DialNotSent(self.name, f"cannot reach Plivo: {plain_reason(exc)}") from exc
            raise DialUncertain(self.name, f"no answer from Plivo: {plain_reason(exc)}") from exc
        return Dialed(str(created.request_uuid))

    async def aclose(self) -> None:
        self._clients.close_all()
