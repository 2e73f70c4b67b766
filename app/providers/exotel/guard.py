"""What stands in for a signature on Exotel's requests, which are signed by nothing: a secret in
the URL's path, optionally an allow-list of sender addresses, and a rate limit, since every
request that passes starts a billable Ultravox call."""

import ipaddress
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from app.auth import matches_any
from app.calltypes import WebhookError
from app.providers.exotel.options import Network

# Longer than any token worth comparing: a path segment past this is refused unread.
MAX_TOKEN_CHARS = 256


class Refused(WebhookError):
    """The URL's token is wrong or the sender's address is not allowed. Deliberately not a
    `SignatureError`: the refusal of those is logged with the URL, whose path holds the token."""

    status_code = 403


class RateLimited(WebhookError):
    """More requests than EXOTEL_RATE_LIMIT_* allows: refused before any Ultravox call."""

    status_code = 429
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


def check_token(presented: str | None, tokens: Sequence[bytes]) -> None:
    """Refuse unless `presented` (the URL's key segment) is one of `tokens`, compared in
    constant time with each."""
    if not presented or len(presented) > MAX_TOKEN_CHARS:
        raise Refused("the URL lacks one of EXOTEL_URL_TOKENS: /exotel/incoming/<token>")
    if not matches_any(presented.encode(), tokens):
        raise Refused("the URL's token is not one of EXOTEL_URL_TOKENS")


def check_address(client: str | None, allowed: Sequence[Network]) -> None:
    """Refuse unless the sender's address (after a trusted proxy's X-Forwarded-For) is in one
    of the `allowed` networks; every address is allowed when there are none."""
    if not allowed:
        return
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        raise Refused("the sender's address is unknown, and EXOTEL_ALLOWED_IPS is set") from None
    if not any(address in network for network in allowed):
        raise Refused(f"{address} is not in EXOTEL_ALLOWED_IPS")


class TokenBucket:
    """At most `burst` requests at once and `rate` per second on average, in this process."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        """Spend one request's token, or `RateLimited` when none is left."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                raise RateLimited(
                    "over EXOTEL_RATE_LIMIT_PER_SECOND and EXOTEL_RATE_LIMIT_BURST: no call "
                    "was created"
                )
            self._tokens -= 1
