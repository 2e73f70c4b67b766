"""The transfer-driver interface: what each provider's `transfer.py` implements (registered as
its SPEC's `transfer`), and the records and HTTP helper they share.

A driver moves a live provider call with the provider's REST API (cold: dial the target; warm:
hold the caller in a conference and ring the person), answers the provider's callbacks for the
transfer in its XML dialect, and reads their outcome into provider-neutral values. The flow in
`app.transfer.flow` decides what happens next; drivers never decide."""

import json
from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import httpx

from app.calltypes import Answer, InboundCall, WebhookRequest
from app.settings import ServiceSettings

# One request to a provider's REST API: connect and answer well within the tool's timeout.
PROVIDER_TIMEOUT = httpx.Timeout(8.0, connect=3.0)


class TransferFailed(Exception):
    """The provider did not accept a transfer request (refused, unreachable, or no answer)."""

    def __init__(self, provider: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.status_code = status_code


@dataclass
class Transfer:
    """One transfer in progress, kept in the shared store under its id while it runs."""

    id: str
    provider: str
    provider_call_id: str
    ultravox_call_id: str
    route: str
    caller: str
    called: str
    target: str
    destination: str
    mode: str
    ring_timeout_seconds: int
    caller_id: str | None
    whisper: bool
    reason: str
    summary: str
    details: dict[str, str] = field(default_factory=dict)  # what the driver kept of the call
    person_call_id: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> "Transfer":
        return cls(**json.loads(text))

    @property
    def conference(self) -> str:
        """The warm transfer's conference room: one per transfer, named by its id."""
        return f"transfer-{self.id}"

    @property
    def dialled_from(self) -> str:
        """The caller ID of a leg the bridge places itself: the route's number unless set."""
        return self.caller_id or self.called


@dataclass(frozen=True)
class CallbackUrls:
    """The absolute URLs of one transfer's provider callbacks on this service."""

    base: str  # PUBLIC_BASE_URL
    provider: str
    transfer_id: str

    def __call__(self, step: str) -> str:
        return f"{self.base}/transfer/{self.provider}/{self.transfer_id}/{step}"


@dataclass(frozen=True)
class DialOutcome:
    """How a dialled leg ended: `answered` when the person took the call."""

    answered: bool
    status: str


class ProviderAPI:
    """JSON or form requests to one provider's REST API, bounded in time (and in size by the
    application's `CappedTransport`); every failure is a `TransferFailed`."""

    def __init__(
        self, http: httpx.AsyncClient, provider: str, base_url: str, auth: httpx.Auth
    ) -> None:
        self._http = http
        self._provider = provider
        self._base_url = base_url
        self._auth = auth

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(
                method,
                self._base_url + path,
                json=json_body,
                data=form,
                auth=self._auth,
                timeout=PROVIDER_TIMEOUT,
            )
        except httpx.HTTPError as exc:  # unreachable, too slow, or an answer over the cap
            raise TransferFailed(self._provider, f"request failed: {exc!r}") from exc
        if response.status_code not in ok:
            text = response.content[:300].decode("utf-8", "replace")
            raise TransferFailed(
                self._provider, f"answered {response.status_code}: {text}", response.status_code
            )
        try:
            data = response.json() if response.content.strip() else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


class TransferDriver(ABC):
    """One provider's transfers. Built at start-up when a route offers transfers on calls of
    this provider and `missing_settings` is empty."""

    name: ClassVar[str]
    # The transfer modes this provider supports; a route asking for another is refused at start.
    modes: ClassVar[frozenset[str]] = frozenset({"cold", "warm"})
    # Whether moving the call leaves the agent's Ultravox call running, as on providers whose
    # media this service relays: then the tool's answer ends that call, and with it the relay's
    # media socket.
    ends_agent_call: ClassVar[bool] = False
    # Whether the id this provider's dialer returns for a call it places is the id its
    # transfers address, so that outbound calls can be transferred too.
    transfers_outbound: ClassVar[bool] = False

    def __init__(self, settings: ServiceSettings, http: httpx.AsyncClient) -> None:
        self.hold_music_url = settings.transfer_hold_music_url

    @staticmethod
    @abstractmethod
    def missing_settings(settings: ServiceSettings) -> list[str]:
        """The settings transfers on this provider need that are not set."""

    def remember(self, call: InboundCall) -> dict[str, str]:
        """What of the inbound webhook the driver needs later to address the live call."""
        return {}

    @abstractmethod
    async def start_cold(self, transfer: Transfer, urls: CallbackUrls) -> None:
        """Replace the caller's stream with a dial of the target; the outcome arrives at the
        `dialed` callback."""

    async def start_warm(self, transfer: Transfer, urls: CallbackUrls) -> str:
        """Ring the person (answered by the `whisper` callback, ended at `person`), then put the
        caller on hold in the transfer's conference; returns the person's call id. If the
        caller cannot be put on hold, the person's call is cancelled and the caller stays with
        the agent."""
        raise TransferFailed(self.name, "warm transfer is not supported")

    @abstractmethod
    async def return_caller(self, transfer: Transfer, stream: Answer, urls: CallbackUrls) -> None:
        """Move the caller (on hold) to `stream`, the answer that connects a new agent; where
        the provider fetches XML from a URL, the `agent` callback serves it."""

    @abstractmethod
    def dial_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        """The caller's instructions for a cold transfer: dial the target, report at `dialed`."""

    @abstractmethod
    def dial_outcome(self, request: WebhookRequest) -> DialOutcome | None:
        """The outcome in a `dialed` callback; None for an event that is not the end."""

    @abstractmethod
    def hangup_answer(self, message: str | None = None) -> Answer:
        """Say `message` if given, then end the leg."""

    def empty_answer(self) -> Answer:
        """The reply to a callback that needs no instructions."""
        return self.hangup_answer()

    def connected_answer(self) -> Answer:
        """The reply to the `dialed` callback that reports the person took the call: where the
        provider calls it once the dial is over, end the caller's leg."""
        return self.hangup_answer()

    def hold_answer(self, transfer: Transfer, urls: CallbackUrls) -> Answer:
        """The caller's instructions while the person is rung: wait in the conference."""
        raise TransferFailed(self.name, "warm transfer is not supported")

    def music_answer(self) -> Answer:
        """What the caller hears while waiting (TRANSFER_HOLD_MUSIC_URL)."""
        raise TransferFailed(self.name, "warm transfer is not supported")

    def whisper_answer(self, transfer: Transfer, urls: CallbackUrls, text: str) -> Answer:
        """The person's instructions once they answer: hear `text`, press a key at `accept`."""
        raise TransferFailed(self.name, "warm transfer is not supported")

    def join_answer(self, transfer: Transfer) -> Answer:
        """The person's instructions after accepting: join the caller in the conference."""
        raise TransferFailed(self.name, "warm transfer is not supported")

    def pressed(self, request: WebhookRequest) -> str:
        """The key the person pressed in an `accept` callback ("" for none)."""
        return ""

    def person_status(self, request: WebhookRequest) -> str | None:
        """The final status of the person's call in a `person` callback; None for an event
        that is not its end."""
        return ""


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <key>`, as Telnyx's and Vonage's APIs take it."""

    def __init__(self, key: str) -> None:
        self._header = f"Bearer {key}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request
