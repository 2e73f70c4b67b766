"""Why an outbound call was not placed: one exception class per answer of `POST /calls`, each
with its HTTP status."""

from typing import Any


class OutboundError(Exception):
    """A call that could not be placed; `status_code` is the HTTP answer, `details` extra
    fields for the caller of the API."""

    status_code = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class InvalidOutboundRequest(OutboundError):
    """The request names something that does not exist or cannot be combined."""

    status_code = 422


class RouteRefusesCalls(OutboundError):
    """The route chosen for the caller number is set to reject calls."""

    status_code = 403


class DialerNotConfigured(OutboundError):
    """The provider's outbound settings are missing; the message names them."""

    status_code = 503


class OverCallLimit(OutboundError):
    """MAX_CONCURRENT_CALLS or the route's max_concurrent_calls is reached: nothing was created
    or dialled. Trying again once calls have ended can work."""

    status_code = 503


class UltravoxCallFailed(OutboundError):
    """Ultravox did not create the call; nothing was dialled."""

    status_code = 502


class UltravoxBusy(UltravoxCallFailed):
    """Ultravox is rate-limiting or short of capacity: trying again later can work."""

    status_code = 503


class PendingCallNotKept(OutboundError):
    """The shared store could not keep the call's answer for a provider that fetches it later;
    nothing was dialled and the Ultravox call was ended. Trying again can work."""

    status_code = 503


class ProviderRefused(OutboundError):
    """The provider refused the call; the Ultravox call was ended."""

    status_code = 502


class ProviderNoAnswer(OutboundError):
    """The provider's answer never arrived: it may be dialling. The Ultravox call is kept and
    ends by itself at its joinTimeout if nobody joins."""

    status_code = 504
