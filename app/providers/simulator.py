"""The simulator interface: what each provider module offers so `ultravox-bridge simulate` can
send the webhook that provider would send and read the answer in that provider's dialect.

A simulator owns its provider's field set, its signing and its XML dialect; the command in
in `app/simulate/` only ever talks to this interface.
"""

import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Literal
from urllib.parse import urlencode

from pydantic import SecretStr
from pydantic_settings import BaseSettings

HttpMethod = Literal["GET", "POST"]
FORM = "application/x-www-form-urlencoded"


class SimulatorError(Exception):
    """The simulation cannot be built: a secret is missing or unusable. The message names it."""


def first_of_rotation(value: SecretStr | None) -> str | None:
    """The first of a comma-separated list of secrets, or None when there is none."""
    if value is None:
        return None
    parts = [part.strip() for part in value.get_secret_value().split(",") if part.strip()]
    return parts[0] if parts else None


@dataclass(frozen=True)
class SimulatedWebhook:
    """One HTTP request exactly as the provider would send it, signed."""

    method: HttpMethod
    url: str
    headers: dict[str, str]
    body: bytes
    fields: dict[str, str]
    call_id: str


class AnswerKind(Enum):
    STREAM = "stream"
    FALLBACK = "fallback"
    REJECT = "reject"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class AnswerReading:
    """What a provider would do with an answer: stream, speak the fallback, reject, or fail."""

    kind: AnswerKind
    detail: str
    stream_url: str | None = None


@dataclass(frozen=True)
class KeyPair:
    """A test signing key pair, both halves as the settings take them."""

    private_key: str
    public_key: str


def url_with_query(url: str, fields: Mapping[str, str]) -> str:
    """`url` with `fields` appended to its query string, as a provider builds a GET webhook."""
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode(fields)


class Simulator(ABC):
    """One provider's webhook, simulated. Built from the secret that signs it; subclasses fail
    fast in their constructor when the secret is unusable."""

    name: ClassVar[str]
    title: ClassVar[str]
    default_method: ClassVar[HttpMethod]
    call_id_field: ClassVar[str]
    # The setting `simulate` signs with, and the one the service verifies with.
    secret_setting: ClassVar[str]
    service_secret_setting: ClassVar[str]

    @abstractmethod
    def __init__(self, secret: str) -> None:
        """Ready to sign with `secret`; `SimulatorError` when it is unusable."""

    @classmethod
    def secret_from(cls, settings: BaseSettings) -> str | None:
        """This provider's signing secret among the simulator settings (app/simulate/): the
        first of its `secret_setting`'s comma-separated list."""
        return first_of_rotation(getattr(settings, cls.secret_setting.lower(), None))

    @classmethod
    def make_key_pair(cls) -> KeyPair:
        """A fresh test key pair, for providers that sign with a private key."""
        raise SimulatorError(
            f"{cls.title} signs webhooks with {cls.secret_setting}, a shared secret: "
            "there is no key pair to make"
        )

    @abstractmethod
    def fields(self, from_number: str, to_number: str) -> dict[str, str]:
        """The fields of a new inbound call, with a fresh call id."""

    @abstractmethod
    def sign(
        self, method: HttpMethod, url: str, params: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """The signature headers for a request to `url` (query included) with form `params`
        (empty for GET) and raw `body`."""

    @abstractmethod
    def read_answer(self, root: ET.Element) -> AnswerReading:
        """Read the service's XML answer in this provider's dialect."""

    def forbidden_hint(self, url: str) -> str:
        """Why the service may have refused the signature (403). This default fits providers
        that sign the URL they request."""
        return (
            f"the service refused the signature. Either the service's {self.service_secret_setting}"
            f" is not the {self.secret_setting} signing here, or the URL it checks differs from "
            f"the URL signed here, which is exactly {url}. Behind a proxy or tunnel the service "
            "sees another scheme and host: set PUBLIC_BASE_URL on the service to this URL's "
            "origin (scheme and host, as the provider will call it)."
        )

    def webhook(
        self, url: str, method: HttpMethod, from_number: str, to_number: str
    ) -> SimulatedWebhook:
        """The signed webhook for a new call from `from_number` to `to_number`."""
        fields = self.fields(from_number, to_number)
        if method == "GET":
            # GET webhooks carry the fields in the URL and sign no form parameters.
            request_url, body = url_with_query(url, fields), b""
            headers = self.sign(method, request_url, {}, body)
        else:
            request_url, body = url, urlencode(fields).encode()
            headers = {"Content-Type": FORM, **self.sign(method, request_url, fields, body)}
        return SimulatedWebhook(
            method, request_url, headers, body, fields, fields[self.call_id_field]
        )


# --- reading answers ------------------------------------------------------------------------


def fallback_reading(root: ET.Element, say: str, dial: str, hangup: str) -> AnswerReading | None:
    """The fallback answer (a spoken message, then a dial or a hang-up), if `root` is one."""
    message = root.find(say)
    if message is None:
        return None
    text = (message.text or "").strip()
    number = root.find(f".//{dial}")
    if number is not None:
        then = f"then forwards the call to {''.join(number.itertext()).strip()}"
    elif root.find(hangup) is not None:
        then = "then hangs up"
    else:
        then = "then nothing"
    return AnswerReading(AnswerKind.FALLBACK, f'says "{text}", {then}')


def unexpected(detail: str) -> AnswerReading:
    return AnswerReading(AnswerKind.UNEXPECTED, detail)
