"""The relay end to end on loopback: a fake Vonage socket, the app served by uvicorn, and a fake
Ultravox socket server whose joinUrl the (mocked) Ultravox API hands out."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import respx
import websockets
from prometheus_client import REGISTRY

from app.relay.platform import PlatformMedia
from app.relay.relay import digit_message
from tests.conftest import created_call, make_settings, running_app
from tests.relay.fakes import (
    PUBLIC_BASE_URL,
    VONAGE_SECRET,
    FakeUltravox,
    PlatformCall,
    eventually,
    fake_ultravox,
    served,
    vonage_fields,
    vonage_webhook,
)


@dataclass
class Call:
    platform: PlatformCall
    ultravox: FakeUltravox
    app: Any


@asynccontextmanager
async def vonage_call(ultravox_api: respx.MockRouter) -> AsyncIterator[Call]:
    """A Vonage call answered by the app and connected on both sides."""
    settings = make_settings(vonage_signature_secret=VONAGE_SECRET, public_base_url=PUBLIC_BASE_URL)
    async with fake_ultravox() as fake, running_app(settings) as client:
        ultravox_api.post("/calls").mock(return_value=created_call(join_url=fake.url))
        answer = await vonage_webhook(vonage_fields()).send(client)
        uri = answer.json()[0]["endpoint"][0]["uri"]
        async with served(client.app) as origin:  # type: ignore[attr-defined]
            socket = await websockets.connect(
                uri.replace("wss://bridge.test", origin), compression=None
            )
            await socket.send(json.dumps({"event": "websocket:connected"}))
            platform = PlatformCall(socket)
            platform.start()
            await asyncio.wait_for(fake.connected.wait(), 5)
            try:
                yield Call(platform, fake, client.app)  # type: ignore[attr-defined]
            finally:
                await platform.stop()


async def test_caller_audio_reaches_ultravox_as_sent(ultravox: respx.MockRouter) -> None:
    async with vonage_call(ultravox) as call:
        for n in range(5):
            await call.platform.socket.send(bytes([n]) * 640)
        await eventually(lambda: len(call.ultravox.audio) == 3200)
    assert bytes(call.ultravox.audio) == b"".join(bytes([n]) * 640 for n in range(5))


async def test_agent_audio_reaches_vonage_in_exact_640_byte_frames(
    ultravox: respx.MockRouter,
) -> None:
    async with vonage_call(ultravox) as call:
        # Ultravox sends ahead of real time, in chunks of any size.
        for size in (4000, 333, 1, 2306):
            await call.ultravox.send(b"\x02" * size)
        await eventually(lambda: len(call.platform.frames) == 11)
        await asyncio.sleep(0.1)
    assert [len(frame) for frame in call.platform.frames] == [640] * 11
    assert b"".join(call.platform.frames).rstrip(b"\x00") == b"\x02" * 6640


async def test_agent_audio_leaves_from_the_pacers_timer_on_the_services_own_protocol(
    ultravox: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    awaited: list[bytes] = []
    send_audio = PlatformMedia.send_audio

    async def counted(self: PlatformMedia, audio: bytes) -> None:
        awaited.append(audio)
        await send_audio(self, audio)

    monkeypatch.setattr(PlatformMedia, "send_audio", counted)
    async with vonage_call(ultravox) as call:
        await call.ultravox.send(b"\x05" * 640 * 10)
        await eventually(lambda: len(call.platform.frames) == 10)
    assert call.platform.frames == [b"\x05" * 640] * 10
    assert awaited == []  # every frame sent from the timer, none through the task


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"provider": "vonage", **labels}) or 0.0


async def test_playback_clear_buffer_drops_the_queue_and_clears_vonage_before_the_next_frame(
    ultravox: respx.MockRouter,
) -> None:
    clears_before = metric("bridge_relay_clears_total")
    async with vonage_call(ultravox) as call:
        await call.ultravox.send(b"\x03" * 640 * 250)  # 5 s of agent speech
        await eventually(lambda: len(call.platform.frames) >= 5)
        await call.ultravox.send({"type": "playback_clear_buffer"})
        await eventually(lambda: '{"action":"clear"}' in call.platform.texts)
        await call.ultravox.send(b"\x04" * 640)  # the agent's answer to the interruption
        await eventually(lambda: call.platform.received[-1] == b"\x04" * 640)
    received = call.platform.received
    clear_at = received.index('{"action":"clear"}')
    assert received[clear_at + 1] == b"\x04" * 640  # nothing of the old speech after the clear
    assert all(message == b"\x03" * 640 for message in received[:clear_at])
    assert len(received[:clear_at]) < 50  # the other 4 s were dropped, not played
    assert metric("bridge_relay_clears_total") == clears_before + 1


async def test_live_relays_and_relayed_frames_are_counted(ultravox: respx.MockRouter) -> None:
    live_before = metric("bridge_relay_live")
    to_ultravox = metric("bridge_relay_frames_total", direction="to_ultravox")
    to_platform = metric("bridge_relay_frames_total", direction="to_platform")
    async with vonage_call(ultravox) as call:
        await eventually(lambda: metric("bridge_relay_live") == live_before + 1)
        assert call.app.state.live_relays == 1  # what shutdown waits for
        for _ in range(3):
            await call.platform.socket.send(bytes(640))
        await call.ultravox.send(bytes(640 * 2))
        await eventually(
            lambda: len(call.platform.frames) == 2 and len(call.ultravox.audio) == 1920
        )
        await call.platform.socket.close()
        await eventually(lambda: metric("bridge_relay_live") == live_before)
        assert call.app.state.live_relays == 0
    assert metric("bridge_relay_frames_total", direction="to_ultravox") == to_ultravox + 3
    assert metric("bridge_relay_frames_total", direction="to_platform") == to_platform + 2


async def test_final_transcripts_and_states_are_logged_at_debug_with_the_call_ids(
    ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="app.relay")
    async with vonage_call(ultravox) as call:
        await call.ultravox.send({"type": "state", "state": "speaking"})
        await call.ultravox.send(
            {"type": "transcript", "role": "agent", "delta": "Hel", "final": False}
        )
        await call.ultravox.send(
            {"type": "transcript", "role": "agent", "text": "Hello!", "final": True}
        )
        await eventually(lambda: any(r.getMessage() == "relay.transcript" for r in caplog.records))
    ids = {
        "provider": "vonage",
        "call_id": "63f61863-4a51-4f6b-86e1-46edebcf9356",
        "ultravox_call_id": "3f1c2d4e-0000-4000-8000-000000000001",
    }
    logged = {
        r.getMessage(): (r.levelname, r.fields)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() in ("relay.state", "relay.transcript")
    }
    assert logged == {
        "relay.state": ("DEBUG", {**ids, "state": "speaking"}),
        "relay.transcript": ("DEBUG", {**ids, "role": "agent", "text": "Hello!"}),
    }


async def test_dtmf_reaches_ultravox_as_a_user_text_message(ultravox: respx.MockRouter) -> None:
    async with vonage_call(ultravox) as call:
        await call.platform.socket.send(
            json.dumps({"event": "websocket:dtmf", "digit": "5", "duration": 250})
        )
        await call.platform.socket.send(
            json.dumps({"event": "websocket:dtmf", "dtmf": {"digit": "#", "duration": 250}})
        )
        await eventually(lambda: len(call.ultravox.data) == 2)
    assert call.ultravox.data == [digit_message("5"), digit_message("#")]
    assert call.ultravox.data[0] == {
        "type": "user_text_message",
        "text": "The caller pressed the key 5 on their phone keypad.",
        "urgency": "immediate",
    }


async def test_caller_hanging_up_closes_the_ultravox_socket(ultravox: respx.MockRouter) -> None:
    async with vonage_call(ultravox) as call:
        await call.platform.socket.close()
        await asyncio.wait_for(call.ultravox.closed.wait(), 5)


async def test_ultravox_ending_the_call_closes_the_vonage_socket_after_the_last_words(
    ultravox: respx.MockRouter,
) -> None:
    async with vonage_call(ultravox) as call:
        await call.ultravox.send(b"\x05" * 640 * 10)  # the agent's goodbye, 200 ms
        await call.ultravox.hang_up()
        await asyncio.wait_for(call.platform.closed.wait(), 5)
    assert call.platform.frames == [b"\x05" * 640] * 10
