"""Console sessions: a signed, expiring cookie, and the CSRF tokens of the console's forms.

No session store: a session is `<key id>.<issued at>.<nonce>.<signature>`, signed with HMAC-SHA256
under a key derived from the API token that signed in. Every replica with the same
BRIDGE_API_TOKENS accepts it, a restart keeps it, and removing that token from
BRIDGE_API_TOKENS ends every session it opened. Sign-out deletes the browser's cookie; a copy
taken earlier stays valid until it expires (CONSOLE_SESSION_HOURS)."""

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

VERSION = "s1"
# Replicas' clocks may differ: a session issued up to this far "in the future" is accepted.
CLOCK_SKEW_SECONDS = 60
MAX_COOKIE_LENGTH = 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mac(key: bytes, message: str) -> str:
    return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest())


@dataclass(frozen=True)
class SessionKey:
    """The keys derived from one API token: its public id, and the secret signing its sessions."""

    key_id: str
    secret: bytes

    @classmethod
    def of(cls, token: bytes) -> "SessionKey":
        key_id = hmac.new(token, b"ultravox-bridge console key id v1", hashlib.sha256).digest()
        secret = hmac.new(token, b"ultravox-bridge console session v1", hashlib.sha256).digest()
        return cls(_b64(key_id[:9]), secret)


@dataclass(frozen=True)
class Session:
    """A valid session: the key that signed it and its nonce (which the CSRF token is bound to)."""

    key: SessionKey
    nonce: str
    issued_at: int

    def csrf_token(self) -> str:
        """The token the console's signed-in forms (sign-out) carry."""
        return _mac(self.key.secret, f"csrf|{self.nonce}")

    def csrf_matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.csrf_token().encode())


class Sessions:
    """Issues and checks session cookies for the configured API tokens."""

    def __init__(
        self,
        tokens: Sequence[bytes],
        lifetime_seconds: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = list(tokens)
        self._keys = [SessionKey.of(token) for token in tokens]
        self.lifetime_seconds = lifetime_seconds
        self._now = now

    def key_of(self, presented: bytes) -> SessionKey | None:
        """The session key of `presented` when it is one of the tokens, else None. Every token
        is compared, in constant time, as `app.auth.matches_any` does."""
        matches = [hmac.compare_digest(presented, token) for token in self._tokens]
        if not presented or not any(matches):
            return None
        return self._keys[matches.index(True)]

    def issue(self, key: SessionKey) -> str:
        """A new session cookie value, signed with `key`."""
        body = f"{VERSION}.{key.key_id}.{int(self._now())}.{secrets.token_urlsafe(18)}"
        return f"{body}.{_mac(key.secret, body)}"

    def check(self, value: str | None) -> Session | None:
        """The session of a cookie value, or None when it is missing, malformed, signed by no
        configured token, or expired."""
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != VERSION or not parts[2].isdigit():
            return None
        _, key_id, issued, nonce, signature = parts
        key = next((k for k in self._keys if hmac.compare_digest(k.key_id, key_id)), None)
        if key is None:
            return None
        expected = _mac(key.secret, ".".join(parts[:4]))
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        issued_at = int(issued)
        age = self._now() - issued_at
        if age >= self.lifetime_seconds or age < -CLOCK_SKEW_SECONDS:
            return None
        return Session(key, nonce, issued_at)
