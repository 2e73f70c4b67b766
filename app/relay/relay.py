"""The relay: one call's audio between the platform's socket and the Ultravox call's socket."""

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.relay import metrics
from app.relay.audio import FRAME_SECONDS, FrameQueue
from app.relay.clock import Clock, MonotonicClock
from app.relay.medium import CLIENT_BUFFER_MS
from app.relay.pacer import FlowSender, PacedSender
from app.relay.platform import CallerAudio, Digit, PlatformClosed, PlatformMedia

logger = logging.getLogger("app.relay")

ULTRAVOX_OPEN_TIMEOUT_SECONDS = 10.0
# Ultravox sends agent audio ahead of real time; a message may hold seconds of it.
ULTRAVOX_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Past its queued audio, how long the caller may take to hear the agent's last words.
DRAIN_MARGIN_SECONDS = 1.0
# How long the relay waits for Ultravox to answer its close frame before it drops the connection.
ULTRAVOX_CLOSE_TIMEOUT_SECONDS = 5.0
# Agent audio held for the caller at most: twice the buffer Ultravox is told the relay has
# (`clientBufferSizeMs`), which Ultravox keeps within. Past it the relay stops reading the socket
# until the caller has heard some, so a broken peer cannot fill the process's memory.
MAX_QUEUED_SECONDS = 2 * CLIENT_BUFFER_MS / 1000
# A ping this often finds a connection to Ultravox that died without a close; one without a
# pong within half of it ends the call.
KEEPALIVE_SECONDS = 20.0
# How often the frames relayed are added to the metrics (app/relay/metrics.py).
PUBLISH_SECONDS = 1.0


def digit_message(digit: str) -> dict[str, Any]:
    """Ultravox has no DTMF on this medium, so a key press reaches the agent as text."""
    return {
        "type": "user_text_message",
        "text": f"The caller pressed the key {digit} on their phone keypad.",
        "urgency": "immediate",
    }


@dataclass(frozen=True)
class CallIds:
    """Names of one relayed call, for its log lines."""

    provider: str
    provider_call_id: str
    ultravox_call_id: str

    def fields(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "call_id": self.provider_call_id,
            "ultravox_call_id": self.ultravox_call_id,
        }


class Relay:
    """Joins a platform socket to an Ultravox `joinUrl`: caller audio is forwarded as it
    arrives; agent audio is queued and played out at the platform's pace; an interruption
    (`playback_clear_buffer`) empties the queue and the platform's buffer at once; digits become
    text; whichever side ends, the other is ended too."""

    def __init__(
        self,
        platform: PlatformMedia,
        join_url: str,
        ids: CallIds,
        clock: Clock | None = None,
        open_timeout: float = ULTRAVOX_OPEN_TIMEOUT_SECONDS,
    ) -> None:
        self.platform = platform
        self.join_url = join_url
        self.ids = ids
        self.clock = clock or MonotonicClock()
        self.open_timeout = open_timeout
        self.queue = FrameQueue(platform.frame_size)
        provider = platform.provider
        self.counts = metrics.FrameCounts(provider)
        self._clears = metrics.CLEARS.labels(provider)
        self._underruns = metrics.UNDERRUNS.labels(provider)
        self.player = self._player()

    async def run(self) -> str:
        """Relay until the call ends; returns who ended it: caller, agent or error."""
        live = metrics.LIVE_RELAYS.labels(self.platform.provider)
        live.inc()
        publisher = asyncio.create_task(self._publish_counts())
        try:
            ended_by = await self._run()
        finally:
            publisher.cancel()
            self.counts.publish(self.player.sent)
            live.dec()
        metrics.RELAYS_ENDED.labels(self.platform.provider, ended_by).inc()
        logger.info("relay.ended", extra={"fields": {**self.ids.fields(), "ended_by": ended_by}})
        return ended_by

    async def _run(self) -> str:
        # aiohttp's WebSocket client: it sends a caller's frame for about a third of the CPU
        # the websockets library took (docs/benchmarks-relay.md).
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            try:
                async with asyncio.timeout(self.open_timeout):
                    ultravox = await session.ws_connect(
                        self.join_url,
                        max_msg_size=ULTRAVOX_MAX_MESSAGE_BYTES,
                        compress=0,  # PCM barely compresses; deflate would only cost CPU
                        heartbeat=KEEPALIVE_SECONDS,
                    )
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                logger.warning(
                    "relay.ultravox_unreachable",
                    extra={"fields": {**self.ids.fields(), "reason": repr(exc)[:300]}},
                )
                await self.platform.hang_up()
                return "error"
            logger.info("relay.started", extra={"fields": self.ids.fields()})
            try:
                return await self._relay(ultravox)
            finally:
                # aiohttp's close waits up to ws_close for each message until the peer's close
                # frame: a peer that keeps sending would hold the relay for as long as it likes.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ULTRAVOX_CLOSE_TIMEOUT_SECONDS):
                        await ultravox.close()

    async def _relay(self, ultravox: aiohttp.ClientWebSocketResponse) -> str:
        caller = asyncio.create_task(self._caller_to_agent(ultravox))
        agent = asyncio.create_task(self._agent_to_queue(ultravox))
        player = asyncio.create_task(self.player.run())
        try:
            done, _ = await asyncio.wait(
                {caller, agent, player}, return_when=asyncio.FIRST_COMPLETED
            )
            if agent in done and not caller.done():
                # Ultravox ended the call (the agent hung up): let the caller hear the agent's
                # last words, then end the platform's call.
                await self._drain(caller)
                await self.platform.hang_up()
                return "agent"
            return "caller"
        finally:
            for task in (caller, agent, player):
                task.cancel()
            for task in (caller, agent, player):
                with contextlib.suppress(asyncio.CancelledError, PlatformClosed, ConnectionError):
                    await task

    def _player(self) -> PacedSender | FlowSender:
        if self.platform.paces_playback:
            return FlowSender(
                self.queue,
                self.platform.send_audio,
                self.clock,
                self.platform.writable,
                self.platform.max_message_bytes,
                self._underruns.inc,
            )
        return PacedSender(
            self.queue,
            self.platform.send_audio,
            self.clock,
            self._underruns.inc,
            self.counts.observe_lateness,
            send_now=self.platform.send_audio_nowait,
        )

    async def _publish_counts(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            self.counts.publish(self.player.sent)

    async def _caller_to_agent(self, ultravox: aiohttp.ClientWebSocketResponse) -> None:
        receive, send, counts = self.platform.receive, ultravox.send_bytes, self.counts
        try:
            while True:
                event = await receive()
                if isinstance(event, CallerAudio):
                    await send(event.audio)
                    counts.to_ultravox += 1
                elif isinstance(event, Digit):
                    await ultravox.send_str(json.dumps(digit_message(event.digit)))
                    logger.debug(
                        "relay.digit", extra={"fields": {**self.ids.fields(), "digit": event.digit}}
                    )
        except PlatformClosed:
            return
        except ConnectionError:  # aiohttp's "cannot write to closing transport"
            # Ultravox is gone; the agent task sees it too and ends the platform's call.
            await asyncio.Event().wait()

    async def _agent_to_queue(self, ultravox: aiohttp.ClientWebSocketResponse) -> None:
        """Until Ultravox closes the socket (the iteration ends) or breaks it (an ERROR
        message: a message over the size limit, a protocol error, a missed pong)."""
        async for message in ultravox:
            if message.type is aiohttp.WSMsgType.BINARY:
                while self.queue.seconds >= MAX_QUEUED_SECONDS:
                    await self.clock.sleep_until(self.clock.now() + FRAME_SECONDS)
                self.queue.push(message.data)
            elif message.type is aiohttp.WSMsgType.TEXT:
                await self._on_data_message(message.data)
            else:
                return

    async def _on_data_message(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "playback_clear_buffer":
            dropped = self.queue.clear()
            await self.platform.clear()
            self._clears.inc()
            logger.debug(
                "relay.cleared",
                extra={"fields": {**self.ids.fields(), "dropped_ms": self._ms(dropped)}},
            )
        elif kind == "transcript" and message.get("final"):
            fields = {
                **self.ids.fields(),
                "role": message.get("role"),
                "text": message.get("text") or message.get("delta"),
            }
            logger.debug("relay.transcript", extra={"fields": fields})
        elif kind == "state":
            fields = {**self.ids.fields(), "state": message.get("state")}
            logger.debug("relay.state", extra={"fields": fields})

    async def _drain(self, caller: "asyncio.Task[None]") -> None:
        deadline = self.clock.now() + self.queue.seconds + DRAIN_MARGIN_SECONDS
        player = self.player
        while (
            (len(self.queue) or player.holding)
            and not caller.done()
            and self.clock.now() < deadline
        ):
            await self.clock.sleep_until(self.clock.now() + FRAME_SECONDS)

    def _ms(self, size: int) -> int:
        return round(size / self.queue.frame_size * FRAME_SECONDS * 1000)
