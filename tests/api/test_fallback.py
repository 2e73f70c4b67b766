"""When Ultravox cannot take the call the caller still hears something: the fallback answer,
in each provider's dialect, well inside the provider's deadline."""

import asyncio
import logging
import time

import httpx
import pytest
import respx

from app.settings import DEFAULT_FALLBACK_MESSAGE
from tests.conftest import API_KEY, ProviderCase, make_settings, running_app

MESSAGE = "Sorry <all> lines & agents are busy."
DIAL = "+15005550100"
# What answering takes beyond waiting on Ultravox, with room for a loaded test machine.
ANSWER_MARGIN_SECONDS = 1.0

FALLBACK_XML = {
    ("twilio", None): '<?xml version="1.0" encoding="UTF-8"?><Response>'
    "<Say>Sorry &lt;all&gt; lines &amp; agents are busy.</Say><Hangup /></Response>",
    ("twilio", DIAL): '<?xml version="1.0" encoding="UTF-8"?><Response>'
    f"<Say>Sorry &lt;all&gt; lines &amp; agents are busy.</Say><Dial>{DIAL}</Dial></Response>",
    ("telnyx", None): "<?xml version='1.0' encoding='utf-8'?>\n<Response>"
    "<Say>Sorry &lt;all&gt; lines &amp; agents are busy.</Say><Hangup /></Response>",
    ("telnyx", DIAL): "<?xml version='1.0' encoding='utf-8'?>\n<Response>"
    f"<Say>Sorry &lt;all&gt; lines &amp; agents are busy.</Say><Dial>{DIAL}</Dial></Response>",
    ("plivo", None): "<Response><Speak>Sorry &lt;all&gt; lines &amp; agents are busy.</Speak>"
    "<Hangup/></Response>",
    ("plivo", DIAL): "<Response><Speak>Sorry &lt;all&gt; lines &amp; agents are busy.</Speak>"
    f"<Dial><Number>{DIAL}</Number></Dial></Response>",
}


def fallback_settings(dial: str | None = None, **overrides: object) -> object:
    return make_settings(fallback_message=MESSAGE, fallback_dial_number=dial, **overrides)


@pytest.mark.parametrize("dial", [None, DIAL], ids=["hang-up", "dial"])
async def test_ultravox_error_gives_the_fallback_answer(
    provider: ProviderCase, dial: str | None, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").respond(500, json={"detail": "boom"})
    async with running_app(fallback_settings(dial)) as client:  # type: ignore[arg-type]
        response = await provider.webhook(provider.fields()).send(client)
    assert response.status_code == 200
    assert response.text == FALLBACK_XML[(provider.name, dial)]
    assert route.call_count == 1


async def test_fallback_url_answers_without_calling_ultravox(
    provider: ProviderCase, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": "wss://u/j"})
    webhook = provider.webhook(provider.fields(), path=f"/{provider.name}/fallback")
    async with running_app(fallback_settings(DIAL)) as client:  # type: ignore[arg-type]
        response = await webhook.send(client)
    assert response.status_code == 200
    assert response.text == FALLBACK_XML[(provider.name, DIAL)]
    assert route.call_count == 0


async def test_fallback_url_still_answers_a_request_without_call_fields(
    provider: ProviderCase, ultravox: respx.MockRouter
) -> None:
    webhook = provider.webhook({"ErrorCode": "11200"}, path=f"/{provider.name}/fallback")
    async with running_app(fallback_settings()) as client:  # type: ignore[arg-type]
        response = await webhook.send(client)
    assert response.status_code == 200
    assert response.text == FALLBACK_XML[(provider.name, None)]


async def test_fallback_url_refuses_a_forged_request(provider: ProviderCase) -> None:
    webhook = provider.webhook(provider.fields(), path=f"/{provider.name}/fallback")
    webhook.headers = {}
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 403


async def test_default_fallback_message_is_spoken() -> None:
    from tests.conftest import twilio_fields, twilio_webhook

    webhook = twilio_webhook(twilio_fields(), path="/twilio/fallback")
    async with running_app(make_settings()) as client:
        response = await webhook.send(client)
    assert f"<Say>{DEFAULT_FALLBACK_MESSAGE}</Say><Hangup />" in response.text


async def test_ultravox_bad_request_is_not_retried(
    provider: ProviderCase, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").respond(400, json={"systemPrompt": ["too long"]})
    async with running_app(fallback_settings()) as client:  # type: ignore[arg-type]
        response = await provider.webhook(provider.fields()).send(client)
    assert response.text == FALLBACK_XML[(provider.name, None)]
    assert route.call_count == 1


async def test_ultravox_429_with_retry_after_then_success_streams(
    ultravox: respx.MockRouter,
) -> None:
    from tests.conftest import JOIN_URL, twilio_fields, twilio_webhook

    route = ultravox.post("/calls")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "slow down"}),
        httpx.Response(201, json={"callId": "c", "joinUrl": JOIN_URL}),
    ]
    async with running_app(make_settings()) as client:
        response = await twilio_webhook(twilio_fields()).send(client)
    assert "<Stream url=" in response.text
    assert route.call_count == 2


async def test_ultravox_503_twice_then_success_streams(ultravox: respx.MockRouter) -> None:
    from tests.conftest import JOIN_URL, plivo_fields, plivo_webhook

    route = ultravox.post("/calls")
    route.side_effect = [
        httpx.Response(503),
        httpx.Response(503),
        httpx.Response(201, json={"callId": "c", "joinUrl": JOIN_URL}),
    ]
    async with running_app(make_settings()) as client:
        response = await plivo_webhook(plivo_fields()).send(client)
    assert "<Stream " in response.text
    assert route.call_count == 3


async def test_ultravox_429_asking_to_wait_past_the_deadline_falls_back_at_once(
    ultravox: respx.MockRouter,
) -> None:
    from tests.conftest import twilio_fields, twilio_webhook

    route = ultravox.post("/calls").respond(429, headers={"Retry-After": "60"})
    # A long deadline, so that waiting on the 429 until the deadline cuts it off is told apart
    # from falling back at once.
    async with running_app(fallback_settings(ultravox_deadline_seconds=6)) as client:  # type: ignore[arg-type]
        started = time.perf_counter()
        response = await twilio_webhook(twilio_fields()).send(client)
        elapsed = time.perf_counter() - started
    assert response.text == FALLBACK_XML[("twilio", None)]
    assert route.call_count == 1
    assert elapsed < ANSWER_MARGIN_SECONDS


async def test_ultravox_hanging_past_the_deadline_gives_the_fallback(
    provider: ProviderCase, ultravox: respx.MockRouter
) -> None:
    never = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    ultravox.post("/calls").side_effect = hang
    deadline = 0.3
    settings = fallback_settings(ultravox_deadline_seconds=deadline)
    async with running_app(settings) as client:  # type: ignore[arg-type]
        started = time.perf_counter()
        response = await provider.webhook(provider.fields()).send(client)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.text == FALLBACK_XML[(provider.name, None)]
    # The deadline is what the caller waits: all of it for a hanging Ultravox, and no more.
    assert deadline - 0.01 <= elapsed < deadline + ANSWER_MARGIN_SECONDS


async def test_ultravox_201_without_join_url_gives_the_fallback(
    provider: ProviderCase, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").respond(201, json={"callId": "c-9", "joinUrl": None})
    async with running_app(fallback_settings()) as client:  # type: ignore[arg-type]
        response = await provider.webhook(provider.fields()).send(client)
    assert response.text == FALLBACK_XML[(provider.name, None)]
    assert route.call_count == 1


async def test_fallback_log_line_names_the_call_and_ultravox_status_but_not_the_key(
    provider: ProviderCase, ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    ultravox.post("/calls").respond(401, json={"detail": "Invalid API key"})
    caplog.set_level(logging.INFO)
    async with running_app(make_settings()) as client:
        await provider.webhook(provider.fields()).send(client)
    [record] = [r for r in caplog.records if r.getMessage() == "webhook.fallback"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["call_id"] == provider.fields()[provider.call_id_field]
    assert fields["ultravox_status"] == 401
    assert fields["ultravox_error"] == "UltravoxAuthError"
    assert API_KEY not in caplog.text
    assert all(API_KEY not in repr(r.__dict__) for r in caplog.records)


async def test_a_failure_after_ultravox_created_the_call_still_gives_the_fallback(
    provider: ProviderCase, ultravox: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # For example the shared store refusing a relayed provider's session: the caller must not
    # meet an HTTP 500 and silence.
    from app.store import StoreError

    async def store_down(*args: object) -> object:
        raise StoreError("Redis put failed")

    ultravox.post("/calls").respond(201, json={"callId": "c-orphan", "joinUrl": "wss://u/j"})
    ended = ultravox.delete("/calls/c-orphan").respond(204)
    async with running_app(fallback_settings()) as client:  # type: ignore[arg-type]
        adapter = client.app.state.bridge.adapters[provider.name]  # type: ignore[attr-defined]
        monkeypatch.setattr(adapter, "stream_answer", store_down)
        response = await provider.webhook(provider.fields()).send(client)
        for _ in range(20):  # the call is ended in the background, after the answer
            if ended.called:
                break
            await asyncio.sleep(0.01)
    assert response.status_code == 200
    assert response.text == FALLBACK_XML[(provider.name, None)]
    # Nobody will join the call the failed answer named: it is ended, not left waiting.
    assert ended.call_count == 1


async def test_a_repeat_that_fails_to_answer_leaves_the_first_webhooks_call_running(
    ultravox: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repeat shares the first webhook's Ultravox call, which the caller may already be
    # talking to: the repeat's own failure must not end it.
    from app.store import StoreError
    from tests.conftest import twilio_fields, twilio_webhook

    async def store_down(*args: object) -> object:
        raise StoreError("Redis put failed")

    ultravox.post("/calls").respond(201, json={"callId": "c-live", "joinUrl": "wss://u/j"})
    ended = ultravox.delete("/calls/c-live").respond(204)
    async with running_app(fallback_settings()) as client:  # type: ignore[arg-type]
        first = await twilio_webhook(twilio_fields()).send(client)
        adapter = client.app.state.bridge.adapters["twilio"]  # type: ignore[attr-defined]
        monkeypatch.setattr(adapter, "stream_answer", store_down)
        repeat = await twilio_webhook(twilio_fields()).send(client)
        await asyncio.sleep(0.3)  # an end would run in the background, after the answer
    assert '<Stream url="wss://u/j"' in first.text
    assert repeat.text == FALLBACK_XML[("twilio", None)]
    assert ended.call_count == 0


async def test_an_unexpected_error_creating_the_call_gives_the_fallback_and_is_logged(
    ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import twilio_fields, twilio_webhook

    ultravox.post("/calls").side_effect = RuntimeError("a bug")
    async with running_app(fallback_settings()) as client:  # type: ignore[arg-type]
        first = await twilio_webhook(twilio_fields()).send(client)
        repeat = await twilio_webhook(twilio_fields()).send(client)
    assert first.text == FALLBACK_XML[("twilio", None)]
    # The failed creation is remembered, so the provider's repeat falls back at once too.
    assert repeat.text == FALLBACK_XML[("twilio", None)]
    assert [r.getMessage() for r in caplog.records].count("webhook.internal_error") == 1
