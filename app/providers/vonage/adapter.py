"""Vonage Voice API: answer webhooks signed with a JWT, answered with an NCCO that connects the
call to this service's media socket, whose audio the relay carries to Ultravox (Ultravox has no
Vonage medium)."""

import contextlib
import hashlib
import hmac
import json
import secrets
from typing import Any

import jwt
from starlette.websockets import WebSocket

from app.calltypes import (
    Answer,
    CallStatus,
    FallbackPlan,
    InboundCall,
    MalformedWebhook,
    ProviderNotConfigured,
    SignatureError,
    WebhookRequest,
)
from app.providers.base import (
    ProviderAdapter,
    inbound_call,
    require_fields,
    seconds_field,
    single_values,
)
from app.providers.media import (
    Admission,
    CallEvents,
    MediaEndpoint,
    RelayPlan,
    SocketRefused,
    StartCall,
)
from app.providers.vonage.options import VonageOptions
from app.relay.medium import server_websocket_medium
from app.relay.platform import Digit, PlatformEvent, PlatformMedia
from app.relay.relay import CallIds
from app.settings import ServiceSettings
from app.store import Store
from app.ultravox import UltravoxCall

NCCO = "application/json"
# How far a JWT's `iat` may be from our clock, either way (Vonage signs at sending time).
JWT_TOLERANCE_SECONDS = 300
# Vonage opens the media socket right after our answer; a reference left unused longer is stale.
SESSION_TTL_SECONDS = 60
SESSION_KEY = "relay:vonage:{reference}"
# Event statuses after which the call is over.
FINAL_STATUSES = frozenset(
    {"completed", "busy", "failed", "rejected", "unanswered", "timeout", "cancelled"}
)
# Held by the first media socket of an Ultravox call: a repeated answer webhook mints another
# reference, but the call takes one socket.
SOCKET_KEY = "relay:vonage:socket:{ultravox_call_id}"
# Fields only call events carry. Vonage's JWT names no URL, so an event's signed payload would
# verify on the answer URL too: these tell the two apart.
EVENT_ONLY_FIELDS = ("status", "timestamp")
# Event fields worth logging, under the names the service's log lines use.
EVENT_FIELDS = {
    "uuid": "call_id",
    "conversation_uuid": "conversation_uuid",
    "status": "status",
    "direction": "direction",
    "from": "from",
    "to": "to",
    "timestamp": "timestamp",
}


def _ncco(actions: list[dict[str, Any]]) -> Answer:
    return Answer(json.dumps(actions, separators=(",", ":")).encode(), NCCO)


def _signed_payloads(request: WebhookRequest) -> list[bytes]:
    """The byte strings Vonage may have hashed into `payload_hash`."""
    if request.method != "POST":
        return [_compact_json(single_values(request.query))]
    payloads = [request.body]
    # A body that is not JSON (or nests too deep to decode) is refused by parse() once the
    # signature is checked.
    with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
        payloads.append(_compact_json(json.loads(request.body)))
    return payloads


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _websocket_origin(public_base_url: str | None) -> str | None:
    if public_base_url is None:
        return None
    scheme, _, rest = public_base_url.partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + rest


class VonageMedia(PlatformMedia):
    """Vonage's media socket: one 20 ms s16le frame per binary message both ways, JSON events
    (`websocket:connected`, `websocket:dtmf`, `websocket:cleared`) and commands (`clear`)."""

    def __init__(self, websocket: WebSocket, sample_rate: int) -> None:
        super().__init__(websocket, VonageAdapter.name, sample_rate)

    def _text_event(self, text: str) -> PlatformEvent:
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(event, dict) or event.get("event") != "websocket:dtmf":
            return None
        # The digit comes at the top level or, from some senders, under `dtmf`.
        nested = event.get("dtmf")
        digit = event.get("digit") or (nested.get("digit") if isinstance(nested, dict) else None)
        return Digit(str(digit)) if digit else None

    async def clear(self) -> None:
        await self._send_text('{"action":"clear"}')

    async def hang_up(self) -> None:
        # `connect` is the NCCO's last action, so closing the socket ends the call.
        await self._close()


class VonageAdapter(ProviderAdapter, MediaEndpoint, CallEvents):
    name = "vonage"
    secret_setting = "VONAGE_SIGNATURE_SECRET"

    def __init__(self, settings: ServiceSettings, store: Store) -> None:
        super().__init__(settings)
        options = VonageOptions.of(settings)
        self._secrets = [secret.get_secret_value() for secret in options.vonage_signature_secret]
        self._sample_rate = options.vonage_sample_rate
        self._media_idle_timeout = settings.relay_media_idle_timeout
        self._public_base_url = settings.public_base_url
        self._media_origin = _websocket_origin(settings.public_base_url)
        self._store = store
        # A new reference can be minted for a call while repeats get its joinUrl, and lives
        # SESSION_TTL_SECONDS: the socket's claim outlasts both.
        self._socket_claim_seconds = settings.dedupe_join_window_seconds + SESSION_TTL_SECONDS

    @classmethod
    def build(cls, settings: ServiceSettings, store: Store) -> "VonageAdapter":
        return cls(settings, store)

    @classmethod
    def setup_hint(cls) -> str:
        return f"{cls.secret_setting} (with PUBLIC_BASE_URL)"

    @property
    def has_secrets(self) -> bool:
        return bool(self._secrets)

    @property
    def ready(self) -> bool:
        # The NCCO must name the media socket's public URL, which only PUBLIC_BASE_URL gives.
        return super().ready and self._media_origin is not None

    def check(self, request: WebhookRequest) -> None:
        if self._media_origin is None:
            raise ProviderNotConfigured(
                "PUBLIC_BASE_URL is required for Vonage: the answer names the public wss:// URL "
                "of the media socket"
            )
        super().check(request)

    def verify(self, request: WebhookRequest) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SignatureError("missing Authorization: Bearer <JWT>")
        claims = self._decode(token.strip())
        issued_at = claims["iat"]
        if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
            raise SignatureError("Vonage JWT iat is not a number")
        if abs(request.received_at - issued_at) > JWT_TOLERANCE_SECONDS:
            raise SignatureError("Vonage JWT iat is too old or in the future")
        claimed = claims.get("payload_hash")
        # Required for GET too: without it the JWT would vouch for any query string.
        if not isinstance(claimed, str):
            raise SignatureError("Vonage JWT lacks payload_hash")
        # Vonage hashes the payload as a JSON object without whitespace, the fields in the
        # order sent (the query's for GET); for POST that may be the body exactly as sent.
        matches = [
            hmac.compare_digest(claimed.lower(), hashlib.sha256(payload).hexdigest())
            for payload in _signed_payloads(request)
        ]
        if not any(matches):
            raise SignatureError("Vonage JWT payload_hash does not match the payload")

    def _decode(self, token: str) -> dict[str, Any]:
        for secret in self._secrets:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    secret,
                    algorithms=["HS256"],
                    issuer="Vonage",
                    leeway=JWT_TOLERANCE_SECONDS,
                    options={"require": ["iat", "iss"]},
                )
            except jwt.InvalidSignatureError:
                continue  # maybe signed with another secret of the rotation list
            except jwt.PyJWTError as exc:
                raise SignatureError(f"Vonage JWT refused: {exc}") from None
            return claims
        raise SignatureError("Vonage JWT signature does not match")

    def _fields(self, request: WebhookRequest) -> dict[str, str]:
        if request.method != "POST":
            return single_values(request.query)
        # With answer_method POST, Vonage sends JSON, not a form.
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedWebhook("the body is not JSON") from None
        if not isinstance(data, dict):
            raise MalformedWebhook("the body is not a JSON object")
        return {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in data.items()
            if value is not None
        }

    def parse(self, request: WebhookRequest) -> InboundCall:
        fields = self._fields(request)
        carried = [name for name in EVENT_ONLY_FIELDS if name in fields]
        if carried:
            raise SignatureError(
                f"this Vonage JWT signed a call event ({', '.join(carried)}), not an answer webhook"
            )
        return inbound_call(self.name, fields, "uuid", "from", "to")

    def medium(self) -> dict[str, Any]:
        return server_websocket_medium(self._sample_rate, self._media_idle_timeout)

    async def stream_answer(self, call: InboundCall, ultravox_call: UltravoxCall) -> Answer:
        # The socket may land on another replica, so the session waits in the shared store under
        # a reference nobody can guess, usable once.
        reference = secrets.token_urlsafe(32)
        session = {
            "call_id": call.call_id,
            "ultravox_call_id": ultravox_call.call_id,
            "join_url": ultravox_call.join_url,
        }
        key = SESSION_KEY.format(reference=reference)
        await self._store.put(key, json.dumps(session), SESSION_TTL_SECONDS)
        endpoint = {
            "type": "websocket",
            "uri": f"{self._media_origin}/{self.name}/media/{reference}",
            "content-type": f"audio/l16;rate={self._sample_rate}",
            "headers": {"call_id": call.call_id},
        }
        return _ncco(
            [
                {
                    "action": "connect",
                    "eventUrl": [f"{self._public_base_url}/{self.name}/events"],
                    "endpoint": [endpoint],
                }
            ]
        )

    def fallback_answer(self, plan: FallbackPlan) -> Answer:
        actions: list[dict[str, Any]] = [{"action": "talk", "text": plan.message}]
        if plan.dial_number:
            # Vonage writes phone numbers in E.164 without the leading +.
            number = plan.dial_number.lstrip("+")
            actions.append({"action": "connect", "endpoint": [{"type": "phone", "number": number}]})
        return _ncco(actions)

    def reject_answer(self) -> Answer:
        # An NCCO without actions ends the call at once.
        return _ncco([])

    async def admit(self, handshake: WebhookRequest, reference: str | None) -> Admission:
        if not reference:
            raise SocketRefused("a Vonage media socket needs its session reference")
        session = await self._store.take(SESSION_KEY.format(reference=reference))
        if session is None:
            raise SocketRefused("unknown, expired or already used session reference")
        details = json.loads(session)
        socket_key = SOCKET_KEY.format(ultravox_call_id=details["ultravox_call_id"])
        if await self._store.claim(socket_key, reference, self._socket_claim_seconds) is not None:
            raise SocketRefused("this call already has its media socket")
        return Admission(details["call_id"], details)

    async def open(
        self, websocket: WebSocket, admission: Admission, start_call: StartCall
    ) -> RelayPlan | None:
        ids = CallIds(self.name, admission.call_id, admission.details["ultravox_call_id"])
        platform = VonageMedia(websocket, self._sample_rate)
        return RelayPlan(platform, admission.details["join_url"], ids)

    def parse_status(self, request: WebhookRequest) -> CallStatus:
        # The answered call's events at /vonage/events: uuid, status, duration (seconds, on
        # `completed`), timestamp. The media socket's own leg reports under another uuid.
        fields = self._fields(request)
        uuid, status = require_fields(fields, "uuid", "status")
        return CallStatus(
            provider=self.name,
            call_ids=(uuid[:128],),
            status=status[:32],
            final=status in FINAL_STATUSES,
            duration_seconds=seconds_field(fields, "duration"),
            hangup_cause=fields.get("reason", "")[:64] or None,
            sequence=fields.get("timestamp", "")[:40] or None,
        )

    def event_fields(self, request: WebhookRequest) -> dict[str, str]:
        fields = self._fields(request)
        return {ours: fields[theirs] for theirs, ours in EVENT_FIELDS.items() if theirs in fields}
