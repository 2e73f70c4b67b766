"""Telnyx outbound calls: Call Control `calls.dial`, streaming the answered call to Ultravox over
bidirectional RTP with the same codec and rate as inbound TeXML calls."""

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
from app.providers.telnyx.options import TelnyxOptions
from app.settings import ServiceSettings

TELNYX_API_URL = "https://api.telnyx.com/v2"


def telnyx_error_message(body: object, fallback: str) -> str:
    """The `detail` (or `title`) of each error in Telnyx's `{"errors": [...]}` answer."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        parts = [
            str(error.get("detail") or error.get("title"))
            for error in errors
            if isinstance(error, dict) and (error.get("detail") or error.get("title"))
        ]
        if parts:
            return "; ".join(parts)
    return fallback


class TelnyxDialer(Dialer):
    name = "telnyx"

    def __init__(self, settings: ServiceSettings, executor: Executor) -> None:
        super().__init__(settings, executor)
        options = TelnyxOptions.of(settings)
        # Imported here, not at module level: importing the SDK takes over a second.
        import telnyx

        self._telnyx = telnyx
        # No retries: a repeated dial after a lost answer would ring the callee twice.
        self._client = telnyx.AsyncTelnyx(
            api_key=options.telnyx_api_key.get_secret_value() if options.telnyx_api_key else "",
            base_url=TELNYX_API_URL,
            timeout=PROVIDER_REQUEST_TIMEOUT_SECONDS,
            max_retries=0,
            http_client=telnyx.DefaultAsyncHttpxClient(
                transport=CappedTransport(httpx.AsyncHTTPTransport())
            ),
        )
        self._connection_id = options.telnyx_connection_id or ""
        self._codec: Any = options.telnyx_stream_codec
        self._sampling_rate: Any = options.telnyx_stream_sampling_rate

    @staticmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        options = TelnyxOptions.of(settings)
        missing = [] if options.telnyx_api_key else ["TELNYX_API_KEY"]
        return missing + ([] if options.telnyx_connection_id else ["TELNYX_CONNECTION_ID"])

    @staticmethod
    def default_from(settings: ServiceSettings) -> str | None:
        options = TelnyxOptions.of(settings)
        return options.telnyx_from_number

    async def dial(self, call: OutboundCall) -> Dialed:
        # Call Control sends the call's events (call.answered, call.hangup) to webhook_url.
        status: dict[str, Any] = {"webhook_url": call.status_url} if call.status_url else {}
        try:
            dialed = await self._client.calls.dial(
                connection_id=self._connection_id,
                from_=call.from_number,
                to=call.to_number,
                timeout_secs=call.ring_timeout_seconds,
                stream_url=call.join_url,
                stream_track="inbound_track",
                stream_bidirectional_mode="rtp",
                stream_codec=self._codec,
                stream_bidirectional_codec=self._codec,
                stream_bidirectional_sampling_rate=self._sampling_rate,
                stream_bidirectional_target_legs="opposite",
                **status,
            )
        except self._telnyx.APIStatusError as exc:
            message = telnyx_error_message(exc.body, str(exc))
            raise DialRefused(self.name, message, exc.status_code) from exc
        except self._telnyx.APIConnectionError as exc:
            # The SDK wraps httpx's error: a failed connect means nothing was sent.
            if isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout):
                raise DialNotSent(self.name, f"cannot reach Telnyx: {plain_reason(exc)}") from exc
            raise DialUncertain(self.name, f"no answer from Telnyx: {plain_reason(exc)}") from exc
        if dialed.data is None:
            raise DialUncertain(self.name, "Telnyx accepted the dial without a call_control_id")
        return Dialed(dialed.data.call_control_id)

    async def aclose(self) -> None:
        await self._client.close()
