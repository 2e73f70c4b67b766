"""Live-call limits: calls over MAX_CONCURRENT_CALLS or a route's max_concurrent_calls get the
route's overflow answer without an Ultravox call, are recorded as refused-over-limit, and a
call's end gives its slot back; with Redis the count is shared by every replica."""

import asyncio
from pathlib import Path

import respx
from prometheus_client import REGISTRY

from app.records.limits import MemoryLiveCalls
from tests.conftest import (
    API_URL,
    JOIN_URL,
    created_call,
    running_app,
    twilio_fields,
    twilio_webhook,
)
from tests.records.conftest import AUTH, flush, records_settings, send_event, uv_call

SIDS = [f"CA{n:032x}" for n in range(1, 5)]
REJECT_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="rejected" /></Response>'
)
FALLBACK_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>{}</Say><Hangup /></Response>'
)


def routes_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "routes:\n"
        "  - name: sales\n"
        "    number: '+15005550001'\n"
        "    inline: {systemPrompt: Sell.}\n"
        f"{extra}"
    )
    return path


async def test_the_global_limit_refuses_the_next_call_until_one_ends() -> None:
    settings = records_settings(max_concurrent_calls=1)
    with respx.mock(base_url=API_URL) as mock:
        create = mock.post("/calls").mock(
            side_effect=[created_call(JOIN_URL, "uv-1"), created_call(JOIN_URL, "uv-1b")]
        )
        async with running_app(settings) as client:
            first = await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            second = await twilio_webhook(twilio_fields(SIDS[1])).send(client)
            repeat = await twilio_webhook(twilio_fields(SIDS[0])).send(client)  # same call
            assert create.call_count == 1
            assert "<Stream" in first.text and "<Stream" in repeat.text
            assert second.text == FALLBACK_TWIML.format(settings.fallback_message)

            # Ultravox reports the first call's end: its slot is free again.
            ended = uv_call("uv-1", "twilio", SIDS[0], ended="2026-12-02T10:05:00Z")
            assert (await send_event(client, "call.ended", ended)).status_code == 204
            third = await twilio_webhook(twilio_fields(SIDS[2])).send(client)
            assert "<Stream" in third.text
            await flush(client)
            calls = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
    outcomes = {call["providerCallId"]: call["outcome"] for call in calls}
    assert outcomes == {SIDS[0]: "answered", SIDS[1]: "refused-over-limit", SIDS[2]: "answered"}
    assert REGISTRY.get_sample_value("bridge_live_calls", {"route": "_all"}) == 1


async def test_a_route_limit_with_overflow_reject(tmp_path: Path) -> None:
    path = routes_file(tmp_path, "    max_concurrent_calls: 1\n    overflow: reject\n")
    settings = records_settings(routes_file=path)
    with respx.mock(base_url=API_URL) as mock:
        create = mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-2"))
        async with running_app(settings) as client:
            await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            refused = await twilio_webhook(twilio_fields(SIDS[1])).send(client)
    assert create.call_count == 1
    assert refused.text == REJECT_TWIML


async def test_a_route_overflow_message_of_its_own(tmp_path: Path) -> None:
    overflow = "    max_concurrent_calls: 1\n    overflow: {message: All lines are busy.}\n"
    settings = records_settings(routes_file=routes_file(tmp_path, overflow))
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-3"))
        async with running_app(settings) as client:
            await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            refused = await twilio_webhook(twilio_fields(SIDS[1])).send(client)
    assert refused.text == FALLBACK_TWIML.format("All lines are busy.")


async def test_a_late_repeat_is_noted_on_its_calls_record_and_takes_no_slot() -> None:
    # Issue 10's join window: a repeat after it gets the reject verb and no call. Here the call
    # it repeats has ended and given its slot back; the repeat must not take it again.
    settings = records_settings(max_concurrent_calls=1, dedupe_join_window_seconds=0.2)
    with respx.mock(base_url=API_URL) as mock:
        create = mock.post("/calls").mock(
            side_effect=[created_call(JOIN_URL, "uv-5"), created_call(JOIN_URL, "uv-6")]
        )
        async with running_app(settings) as client:
            first = await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            ended = uv_call("uv-5", "twilio", SIDS[0], ended="2026-12-02T10:05:00Z")
            assert (await send_event(client, "call.ended", ended)).status_code == 204
            await asyncio.sleep(0.3)  # past the join window
            late = await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            other = await twilio_webhook(twilio_fields(SIDS[1])).send(client)
            await flush(client)
            calls = (await client.get("/api/calls", headers=AUTH)).json()["calls"]
            repeated = next(call for call in calls if call["providerCallId"] == SIDS[0])
            detail = (await client.get(f"/api/calls/{repeated['id']}", headers=AUTH)).json()
    assert "<Stream" in first.text
    assert late.text == REJECT_TWIML
    assert "<Stream" in other.text  # the slot was free: the late repeat took none
    assert create.call_count == 2
    assert len(calls) == 2  # no record of its own for the repeat
    assert (repeated["outcome"], repeated["state"], repeated["endedBy"]) == (
        "answered",
        "ended",
        "ultravox",
    )
    [noted] = [event for event in detail["timeline"] if event["kind"] == "webhook.late_repeat"]
    assert noted["source"] == "bridge"
    assert noted["detail"]["reason"].startswith("a repeat of a call created over 0.2s ago")


async def test_a_failed_creation_gives_its_slot_back() -> None:
    settings = records_settings(max_concurrent_calls=1)
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").respond(400, json={"detail": "bad"})
        async with running_app(settings) as client:
            first = await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            mock.post("/calls").mock(return_value=created_call(JOIN_URL, "uv-4"))
            second = await twilio_webhook(twilio_fields(SIDS[1])).send(client)
    assert "<Say>" in first.text
    assert "<Stream" in second.text


async def test_a_slot_ends_by_itself_at_its_deadline() -> None:
    now = [1000.0]
    live = MemoryLiveCalls(1, clock=lambda: now[0])
    assert await live.acquire("a", "r", None, 90)
    assert not await live.acquire("b", "r", None, 90)
    now[0] += 91
    assert await live.acquire("b", "r", None, 90)


async def test_a_slot_taken_again_after_its_release_keeps_its_new_deadline() -> None:
    now = [1000.0]
    live = MemoryLiveCalls(2, clock=lambda: now[0])
    assert await live.acquire("a", "r", 1, 10)
    await live.release("a", "r")
    assert await live.acquire("a", "r", 1, 100)  # the same call id, a new slot
    now[0] += 11  # past the first slot's deadline, not the second's
    assert not await live.acquire("b", "r", 1, 100)  # "a" still holds the route's one slot
    assert await live.acquire("c", "other", None, 100)
    assert not await live.acquire("d", "other", None, 100)  # two slots in all
    now[0] += 90
    assert await live.acquire("b", "r", 1, 100)  # "a" and "c" have run out


async def test_replicas_share_the_count_through_redis(redis_url: str) -> None:
    settings = records_settings(max_concurrent_calls=1, redis_url=redis_url)
    with respx.mock(base_url=API_URL) as mock:
        create = mock.post("/calls").mock(
            side_effect=[created_call(JOIN_URL, "uv-5"), created_call(JOIN_URL, "uv-5b")]
        )
        async with running_app(settings) as one, running_app(settings) as two:
            first = await twilio_webhook(twilio_fields(SIDS[0])).send(one)
            second = await twilio_webhook(twilio_fields(SIDS[1])).send(two)
            assert "<Stream" in first.text and "<Say>" in second.text
            # The end reported to the second replica frees the slot the first one took.
            ended = uv_call("uv-5", "twilio", SIDS[0], ended="2026-12-02T10:05:00Z")
            await flush(one)
            assert (await send_event(one, "call.ended", ended)).status_code == 204
            third = await twilio_webhook(twilio_fields(SIDS[2])).send(two)
    assert "<Stream" in third.text
    assert create.call_count == 2


async def test_an_unreachable_redis_lets_calls_through() -> None:
    settings = records_settings(max_concurrent_calls=1, redis_url="redis://127.0.0.1:1/0")
    with respx.mock(base_url=API_URL) as mock:
        mock.post("/calls").mock(
            side_effect=[created_call(JOIN_URL, "uv-6"), created_call(JOIN_URL, "uv-6b")]
        )
        async with running_app(settings) as client:
            first = await twilio_webhook(twilio_fields(SIDS[0])).send(client)
            second = await twilio_webhook(twilio_fields(SIDS[1])).send(client)
    assert "<Stream" in first.text and "<Stream" in second.text
