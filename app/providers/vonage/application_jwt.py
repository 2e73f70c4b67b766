"""The credential of Vonage's Voice API: a short-lived JWT signed (RS256) with the
application's private key, minted per request (`Authorization: Bearer <JWT>`)."""

import time
import uuid
from collections.abc import Generator

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

# Vonage's SDK mints tokens valid 15 minutes; each of ours signs one request.
TOKEN_SECONDS = 300


def load_private_key(pem: str) -> RSAPrivateKey:
    """The application's RSA private key from its PEM text; `ValueError` saying what to set
    otherwise."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError(
            "must be the application's private key in PEM form (-----BEGIN PRIVATE KEY-----, "
            "as the Vonage Dashboard downloads it), unencrypted; in one line, write its line "
            "breaks as \\n"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("must be an RSA private key: Vonage signs application JWTs with RS256")
    return key


class ApplicationJWT(httpx.Auth):
    """Signs each request with a fresh application JWT (`application_id`, `iat`, `exp`, `jti`)."""

    def __init__(self, application_id: str, private_key_pem: str) -> None:
        self._application_id = application_id
        self._key = load_private_key(private_key_pem)

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "application_id": self._application_id,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key, algorithm="RS256")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request
