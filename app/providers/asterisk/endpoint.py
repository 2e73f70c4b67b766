"""Asterisk's WebSocket channel driver (chan_websocket, Asterisk 20.16 / 21.11 / 22.6 and later).

The PBX dials `WebSocket/<connection>` from its dialplan and connects to this service's
`/asterisk/media` socket, authenticated by a shared token. There is no webhook: the socket's
`MEDIA_START` message announces the call, and the Ultravox call is created then. Asterisk times
playback itself, so agent audio is handed over in whole frames as fast as it accepts them
(MEDIA_XOFF / MEDIA_XON) and FLUSH_MEDIA drops what it has queued when the caller interrupts."""

import asyncio
import base64
import contextlib
import json
import logging

from starlette.websockets import WebSocket

from app.auth import matches_any
from app.calltypes import InboundCall, WebhookRequest
from app.phone import to_e164
from app.providers.asterisk.options import AsteriskOptions
from app.providers.base import single_values
from app.providers.media import (
    Admission,
    MediaEndpoint,
    RelayPlan,
    SocketRefused,
    StartCall,
)
from app.relay.medium import server_websocket_medium
from app.relay.platform import (
    SOCKET_ERRORS,
    Digit,
    PlatformClosed,
    PlatformEvent,
    PlatformMedia,
)
from app.relay.relay import CallIds
from app.settings import ServiceSettings

logger = logging.getLogger("app.providers.asterisk")

# Signed linear formats whose rate Ultravox can be asked for directly (no resampling).
SAMPLE_RATES = {"slin": 8000, "slin16": 16000}
# chan_websocket closes the socket on a message over 65500 bytes.
MAX_MESSAGE_BYTES = 65000
MEDIA_START_TIMEOUT_SECONDS = 5.0
MEDIA_SUBPROTOCOL = "media"


class MediaStartError(Exception):
    """The socket's opening message is missing or names a format the relay cannot carry."""


def parse_control(text: str) -> dict[str, str]:
    """A chan_websocket event in either of its formats: plain text (`DTMF_END digit:5`) or JSON
    (`{"event": "DTMF_END", "digit": "5"}`, chan_websocket.conf control_message_format=json)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {key: str(value) for key, value in data.items() if not isinstance(value, dict)}
    words = text.split()
    if not words:
        return {}
    name, *pairs = words
    event = {"event": name}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if sep:
            event[key] = value
    return event


class AsteriskMedia(PlatformMedia):
    """An accepted chan_websocket socket, past its MEDIA_START."""

    paces_playback = True

    def __init__(
        self, websocket: WebSocket, sample_rate: int, frame_size: int, json_commands: bool
    ) -> None:
        super().__init__(websocket, AsteriskEndpoint.name, sample_rate)
        self.frame_size = frame_size
        self.max_message_bytes = MAX_MESSAGE_BYTES // frame_size * frame_size
        self._json_commands = json_commands
        self._may_send = asyncio.Event()
        self._may_send.set()

    async def command(self, name: str) -> None:
        """Send a command in the control format the PBX uses."""
        await self._send_text(json.dumps({"command": name}) if self._json_commands else name)

    def _text_event(self, text: str) -> PlatformEvent:
        event = parse_control(text)
        name = event.get("event")
        if name == "DTMF_END" and event.get("digit"):
            return Digit(event["digit"])
        if name == "MEDIA_XOFF":
            self._may_send.clear()  # Asterisk's queue is nearly full: anything more is dropped
        elif name == "MEDIA_XON":
            self._may_send.set()
        return None

    async def writable(self) -> None:
        await self._may_send.wait()

    async def clear(self) -> None:
        await self.command("FLUSH_MEDIA")

    async def hang_up(self) -> None:
        with contextlib.suppress(PlatformClosed):  # already gone: nothing to hang up
            await self.command("HANGUP")
        await self._close()


class AsteriskEndpoint(MediaEndpoint):
    name = "asterisk"
    secret_setting = "ASTERISK_TOKEN"

    def __init__(self, settings: ServiceSettings) -> None:
        options = AsteriskOptions.of(settings)
        self._tokens = [token.get_secret_value().encode() for token in options.asterisk_token]
        self._media_idle_timeout = settings.relay_media_idle_timeout

    @property
    def ready(self) -> bool:
        return bool(self._tokens)

    def subprotocol(self, offered: list[str]) -> str | None:
        # websocket_client.conf's `protocols = media` offers this; a strict client needs it back.
        return MEDIA_SUBPROTOCOL if MEDIA_SUBPROTOCOL in offered else None

    def _presented_token(self, handshake: WebhookRequest) -> str | None:
        # websocket_client.conf's username/password arrive as HTTP Basic credentials (the token
        # is the password); a `token` URI parameter (the dial string's v() option) also works.
        scheme, _, credentials = handshake.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except ValueError:  # not base64, not ASCII, or not UTF-8 once decoded
                return None
            return decoded.partition(":")[2]
        if scheme.lower() == "bearer":
            return credentials.strip()
        return single_values(handshake.query).get("token")

    def _authenticate(self, handshake: WebhookRequest) -> None:
        if not self._tokens:
            raise SocketRefused("ASTERISK_TOKEN is not configured")
        presented = (self._presented_token(handshake) or "").encode()
        if not matches_any(presented, self._tokens):
            raise SocketRefused("missing or wrong Asterisk token")

    async def admit(self, handshake: WebhookRequest, reference: str | None) -> Admission:
        self._authenticate(handshake)
        if reference:
            raise SocketRefused("the Asterisk media socket takes no session reference")
        params = single_values(handshake.query)
        details = {name: params[name] for name in ("call_id", "from", "to") if params.get(name)}
        return Admission(details.get("call_id", ""), details)

    async def open(
        self, websocket: WebSocket, admission: Admission, start_call: StartCall
    ) -> RelayPlan | None:
        try:
            start = await asyncio.wait_for(
                self._media_start(websocket), MEDIA_START_TIMEOUT_SECONDS
            )
            sample_rate = self._sample_rate(start)
        except (MediaStartError, TimeoutError, PlatformClosed) as exc:
            logger.warning(
                "asterisk.media_start_refused",
                extra={"fields": {"call_id": admission.call_id, "reason": str(exc)}},
            )
            await _refuse(websocket, json_commands=False)
            return None
        json_commands = start.get("json") == "true"
        call_id = admission.call_id or start.get("channel_id") or start.get("channel", "")
        call = InboundCall(
            provider=self.name,
            call_id=call_id,
            from_number=to_e164(admission.details.get("from", "unknown")),
            to_number=to_e164(admission.details.get("to", "unknown")),
            raw={**admission.details, **start},
        )
        medium = server_websocket_medium(sample_rate, self._media_idle_timeout)
        created = await start_call(call, medium)
        if created is None:
            # Dial() returns and the dialplan goes on to its own fallback.
            await _refuse(websocket, json_commands=json_commands)
            return None
        frame_size = _frame_size(start, sample_rate)
        platform = AsteriskMedia(websocket, sample_rate, frame_size, json_commands)
        # Answer only now that an agent is there (the dial string's `n` option defers it).
        await platform.command("ANSWER")
        return RelayPlan(platform, created.join_url, CallIds(self.name, call_id, created.call_id))

    async def _media_start(self, websocket: WebSocket) -> dict[str, str]:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise PlatformClosed("closed before MEDIA_START")
            text = message.get("text")
            if not text:
                continue  # audio before MEDIA_START has no call to go to
            event = parse_control(text)
            if event.get("event") == "MEDIA_START":
                if text.lstrip().startswith("{"):
                    event["json"] = "true"
                return event

    def _sample_rate(self, start: dict[str, str]) -> int:
        media_format = start.get("format", "")
        if media_format not in SAMPLE_RATES:
            raise MediaStartError(
                f"format {media_format!r} is not relayed; dial with c(slin16) (or c(slin))"
            )
        return SAMPLE_RATES[media_format]


def _frame_size(start: dict[str, str], sample_rate: int) -> int:
    expected = sample_rate // 50 * 2  # 20 ms of s16le
    reported = start.get("optimal_frame_size", "")
    return int(reported) if reported.isdigit() and int(reported) > 0 else expected


async def _refuse(websocket: WebSocket, *, json_commands: bool) -> None:
    with contextlib.suppress(*SOCKET_ERRORS):  # the PBX closed first
        await websocket.send_text(json.dumps({"command": "HANGUP"}) if json_commands else "HANGUP")
        await websocket.close(1000)
