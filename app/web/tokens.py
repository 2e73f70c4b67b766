"""Web call tokens: short-lived permissions to start one web call of one route, minted by a
site's own backend (after its sign-in) with WEB_CALL_SECRET, checked here.

A token is `<payload>.<signature>`, both base64url without padding: the payload is the JSON
`{"route": ..., "exp": <unix seconds>, "sub": ...}` ("sub" optional: who the site says the
visitor is, copied into the call's metadata), the signature HMAC-SHA256 of the payload's
base64url text keyed by the secret. The README shows how to mint one in Python and Node.js;
`ultravox-bridge web-token` mints one from the shell."""

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

# A token longer than this is refused unread.
MAX_TOKEN_CHARS = 1024
MAX_SUBJECT_CHARS = 128


class TokenRefused(Exception):
    """The token is missing, malformed, forged, expired, for another route, or lives longer
    than WEB_TOKEN_MAX_TTL_SECONDS allows; the message says which."""


@dataclass(frozen=True)
class WebToken:
    route: str
    expires: int
    subject: str | None
    signature: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


def mint_token(
    secret: str, route: str, ttl_seconds: int, subject: str | None = None, now: float | None = None
) -> str:
    """A token for one call of `route`, valid for `ttl_seconds` from `now`."""
    claims: dict[str, str | int] = {
        "route": route,
        "exp": int(time.time() if now is None else now) + ttl_seconds,
    }
    if subject is not None:
        claims["sub"] = subject
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret.encode(), payload)}"


def verify_token(
    token: str, secret: str, route: str, max_ttl_seconds: int, now: float | None = None
) -> WebToken:
    """The token's claims if it was signed with `secret` for `route` and is still valid, else
    `TokenRefused`. The signature is checked before anything in the payload is believed."""
    if not token:
        raise TokenRefused("a web call token is required (the site's backend mints it)")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenRefused("the web call token is malformed")
    payload, signature = token.split(".")
    if not hmac.compare_digest(signature.encode(), _sign(secret.encode(), payload).encode()):
        raise TokenRefused("the web call token's signature is not valid")
    try:
        claims = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise TokenRefused("the web call token is malformed") from None
    expires = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise TokenRefused("the web call token has no expiry (exp)")
    subject = claims.get("sub")
    if subject is not None and (not isinstance(subject, str) or len(subject) > MAX_SUBJECT_CHARS):
        raise TokenRefused(f"the web call token's sub must be text of at most {MAX_SUBJECT_CHARS}")
    current = time.time() if now is None else now
    if expires <= current:
        raise TokenRefused("the web call token has expired: mint a new one")
    if expires - current > max_ttl_seconds:
        raise TokenRefused(
            f"the web call token lives longer than {max_ttl_seconds}s "
            "(WEB_TOKEN_MAX_TTL_SECONDS): mint shorter-lived tokens"
        )
    if claims.get("route") != route:
        raise TokenRefused("the web call token is for another route")
    return WebToken(route, expires, subject, signature)
