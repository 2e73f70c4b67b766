"""Asterisk chan_websocket: the PBX connects with a token, MEDIA_START announces the call, and
the relay hands agent audio over in whole frames, respecting MEDIA_XOFF / MEDIA_XON."""

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import respx
import websockets

from app.providers.asterisk.endpoint import parse_control
from app.relay.medium import server_websocket_medium
from app.relay.relay import digit_message
from app.settings import DEFAULT_SYSTEM_PROMPT
from tests.conftest import CALLED, CALLER, created_call, make_settings, running_app
from tests.relay.fakes import (
    ASTERISK_TOKEN,
    FakeUltravox,
    PlatformCall,
    eventually,
    fake_ultravox,
    served,
)

MEDIA_START = (
    "MEDIA_START connection_id:e226e283-c90a-4ea9-9e37-389000b9ef47 "
    "channel:WebSocket/bridge/0x5140001a0040 format:slin16 optimal_frame_size:640"
)
QUERY = f"call_id=1761245643.1&from=%2B{CALLER[1:]}&to={CALLED[1:]}"


def basic(token: str) -> dict[str, str]:
    credentials = base64.b64encode(f"asterisk:{token}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


@dataclass
class Pbx:
    platform: PlatformCall
    ultravox: FakeUltravox
    origin: str


@asynccontextmanager
async def asterisk_app(ultravox_api: respx.MockRouter) -> AsyncIterator[tuple[str, FakeUltravox]]:
    settings = make_settings(asterisk_token=f"old-token-0123456789abcdef,{ASTERISK_TOKEN}")
    async with fake_ultravox() as fake, running_app(settings) as client:
        ultravox_api.post("/calls").mock(return_value=created_call(join_url=fake.url))
        async with served(client.app) as origin:  # type: ignore[attr-defined]
            yield origin, fake


@asynccontextmanager
async def pbx_call(
    ultravox_api: respx.MockRouter, media_start: str = MEDIA_START
) -> AsyncIterator[Pbx]:
    async with asterisk_app(ultravox_api) as (origin, fake):
        socket = await websockets.connect(
            f"{origin}/asterisk/media?{QUERY}",
            additional_headers=basic(ASTERISK_TOKEN),
            subprotocols=[websockets.Subprotocol("media")],
        )
        assert socket.subprotocol == "media"
        await socket.send(media_start)
        platform = PlatformCall(socket)
        platform.start()
        await asyncio.wait_for(fake.connected.wait(), 5)
        try:
            yield Pbx(platform, fake, origin)
        finally:
            await platform.stop()


def test_control_messages_are_read_in_both_formats() -> None:
    assert parse_control("DTMF_END digit:5") == {"event": "DTMF_END", "digit": "5"}
    assert parse_control('{"event": "DTMF_END", "channel_id": "1.1", "digit": "5"}') == {
        "event": "DTMF_END",
        "channel_id": "1.1",
        "digit": "5",
    }
    assert parse_control(MEDIA_START)["optimal_frame_size"] == "640"


async def test_the_call_is_created_at_16khz_and_answered(ultravox: respx.MockRouter) -> None:
    async with pbx_call(ultravox) as pbx:
        await eventually(lambda: "ANSWER" in pbx.platform.texts)
    sent = json.loads(ultravox.routes[0].calls.last.request.content)
    assert sent == {
        "firstSpeakerSettings": {"agent": {}},
        "systemPrompt": DEFAULT_SYSTEM_PROMPT,
        "metadata": {
            "provider": "asterisk",
            "providerCallId": "1761245643.1",
            "callerNumber": CALLER,
            "calledNumber": CALLED,
        },
        "medium": server_websocket_medium(16000, "45s"),
    }


async def test_audio_flows_both_ways_in_whole_frames(ultravox: respx.MockRouter) -> None:
    async with pbx_call(ultravox) as pbx:
        await pbx.platform.socket.send(b"\x01" * 640)
        await pbx.ultravox.send(b"\x02" * (640 * 3 + 100))  # ends mid-frame
        await eventually(lambda: len(b"".join(pbx.platform.frames)) == 640 * 4)
        await eventually(lambda: len(pbx.ultravox.audio) == 640)
    assert all(len(frame) % 640 == 0 for frame in pbx.platform.frames)
    assert b"".join(pbx.platform.frames) == b"\x02" * (640 * 3 + 100) + b"\x00" * 540
    assert bytes(pbx.ultravox.audio) == b"\x01" * 640


async def test_nothing_is_sent_between_xoff_and_xon(ultravox: respx.MockRouter) -> None:
    async with pbx_call(ultravox) as pbx:
        await pbx.platform.socket.send("MEDIA_XOFF")
        await asyncio.sleep(0.05)
        await pbx.ultravox.send(b"\x03" * 640 * 5)
        await asyncio.sleep(0.2)
        assert pbx.platform.frames == []
        await pbx.platform.socket.send("MEDIA_XON")
        await eventually(lambda: b"".join(pbx.platform.frames) == b"\x03" * 640 * 5)


async def test_barge_in_flushes_asterisk_and_dtmf_becomes_text(
    ultravox: respx.MockRouter,
) -> None:
    async with pbx_call(ultravox) as pbx:
        await pbx.ultravox.send({"type": "playback_clear_buffer"})
        await eventually(lambda: "FLUSH_MEDIA" in pbx.platform.texts)
        await pbx.platform.socket.send("DTMF_END digit:7")
        await eventually(lambda: pbx.ultravox.data == [digit_message("7")])


async def test_hang_up_propagates_both_ways(ultravox: respx.MockRouter) -> None:
    async with pbx_call(ultravox) as pbx:
        await pbx.ultravox.hang_up()
        await asyncio.wait_for(pbx.platform.closed.wait(), 5)
        assert pbx.platform.texts[-1] == "HANGUP"
    async with pbx_call(ultravox) as pbx:
        await pbx.platform.socket.close()
        await asyncio.wait_for(pbx.ultravox.closed.wait(), 5)


@pytest.mark.parametrize(
    "headers, query",
    [
        ({}, QUERY),
        (basic("wrong-token-0123456789abcdef"), QUERY),
        ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, QUERY),
        ({}, f"{QUERY}&token=wrong-token-0123456789abcdef"),
    ],
    ids=["missing", "wrong_basic", "wrong_bearer", "wrong_query"],
)
async def test_a_missing_or_wrong_token_is_refused_before_any_ultravox_call(
    headers: dict[str, str], query: str, ultravox: respx.MockRouter
) -> None:
    async with asterisk_app(ultravox) as (origin, fake):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{origin}/asterisk/media?{query}", additional_headers=headers)
    assert refused.value.response.status_code == 403
    assert ultravox.routes[0].call_count == 0
    assert not fake.connected.is_set()


async def test_the_token_may_come_as_a_uri_parameter(ultravox: respx.MockRouter) -> None:
    async with asterisk_app(ultravox) as (origin, fake):
        socket = await websockets.connect(f"{origin}/asterisk/media?{QUERY}&token={ASTERISK_TOKEN}")
        await socket.send(MEDIA_START)
        await asyncio.wait_for(fake.connected.wait(), 5)
        await socket.close()


async def test_an_unrelayable_format_is_hung_up_without_an_ultravox_call(
    ultravox: respx.MockRouter,
) -> None:
    async with asterisk_app(ultravox) as (origin, _):
        socket = await websockets.connect(
            f"{origin}/asterisk/media?{QUERY}", additional_headers=basic(ASTERISK_TOKEN)
        )
        await socket.send(MEDIA_START.replace("slin16", "ulaw").replace("640", "160"))
        assert await asyncio.wait_for(socket.recv(), 5) == "HANGUP"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
    assert ultravox.routes[0].call_count == 0


async def test_ultravox_failing_hangs_up_so_the_dialplan_falls_back(
    ultravox: respx.MockRouter,
) -> None:
    settings = make_settings(asterisk_token=ASTERISK_TOKEN)
    ultravox.post("/calls").mock(return_value=httpx.Response(503))
    async with running_app(settings) as client, served(client.app) as origin:  # type: ignore[attr-defined]
        socket = await websockets.connect(
            f"{origin}/asterisk/media?{QUERY}", additional_headers=basic(ASTERISK_TOKEN)
        )
        await socket.send(
            json.dumps(
                {
                    "event": "MEDIA_START",
                    "channel_id": "1761245643.1",
                    "format": "slin16",
                    "optimal_frame_size": 640,
                }
            )
        )
        assert json.loads(await asyncio.wait_for(socket.recv(), 10)) == {"command": "HANGUP"}
