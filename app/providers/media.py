"""The interface of providers whose media the service relays itself (the WebSocket medium):
their platform opens a media socket to the service, and the relay joins it to Ultravox.

A media endpoint answers two questions for the one generic socket route: may this socket in
(`admit`, before it is accepted, so a refusal costs nothing) and, once accepted, which call's
audio does it carry (`open`)."""

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.websockets import WebSocket

from app.calltypes import InboundCall, WebhookError, WebhookRequest
from app.relay.platform import PlatformMedia
from app.relay.relay import CallIds
from app.settings import ServiceSettings
from app.ultravox import UltravoxCall

# Creates the Ultravox call for a socket that arrived without a webhook before it (Asterisk);
# None when the route rejects the call or Ultravox cannot take it.
StartCall = Callable[[InboundCall, dict[str, Any]], Awaitable[UltravoxCall | None]]


class SocketRefused(WebhookError):
    """A media socket without a valid credential or session reference."""

    status_code = 403


@dataclass(frozen=True)
class Admission:
    """A socket the endpoint let in, with what it learnt from the handshake."""

    call_id: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RelayPlan:
    """An accepted platform socket and the Ultravox call it is to be joined to."""

    platform: PlatformMedia
    join_url: str
    ids: CallIds


class MediaEndpoint(ABC):
    """A provider's media socket endpoint, `/{name}/media[/{reference}]`."""

    name: ClassVar[str]
    # The setting whose secret a platform presents on the socket.
    secret_setting: ClassVar[str]

    @abstractmethod
    def __init__(self, settings: ServiceSettings) -> None:
        """Endpoints are built once at start-up from the settings (media-only ones by the
        registry in app/providers/__init__.py); subclasses read what they need."""

    @classmethod
    def setup_hint(cls) -> str:
        """What to set so that this endpoint can take calls."""
        return cls.secret_setting

    @property
    def ready(self) -> bool:
        """Whether a platform's socket can be admitted (its secret is configured)."""
        return True

    def subprotocol(self, offered: list[str]) -> str | None:
        """The WebSocket subprotocol to accept among those the platform offered, if any."""
        return None

    @abstractmethod
    async def admit(self, handshake: WebhookRequest, reference: str | None) -> Admission:
        """Let the socket in or raise `WebhookError` (it is then refused before it is accepted,
        and no Ultravox call is created)."""

    @abstractmethod
    async def open(
        self, websocket: WebSocket, admission: Admission, start_call: StartCall
    ) -> RelayPlan | None:
        """Read the platform's opening message from the accepted socket and name the Ultravox
        call to join; None when the socket was ended instead (the endpoint closed it)."""


class CallEvents(ABC):
    """A provider that reports call progress to `/{name}/events`, signed like its webhooks."""

    @abstractmethod
    def event_fields(self, request: WebhookRequest) -> dict[str, str]:
        """The fields of a verified event worth a log line; `MalformedWebhook` if unreadable."""
