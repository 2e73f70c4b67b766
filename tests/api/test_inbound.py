"""The inbound flow end to end, per provider: a signed webhook in, the exact Ultravox request
out, the exact XML back."""

import json

import httpx
import pytest
import respx

from app.settings import DEFAULT_SYSTEM_PROMPT
from tests.conftest import (
    AGENT_ID,
    CALLED,
    CALLER,
    JOIN_URL,
    ProviderCase,
    make_settings,
    running_app,
)

ESCAPED_JOIN_URL = JOIN_URL.replace("&", "&amp;")

STREAM_XML = {
    "twilio": '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
    f'<Stream url="{ESCAPED_JOIN_URL}" /></Connect></Response>',
    "telnyx": "<?xml version='1.0' encoding='utf-8'?>\n<Response><Connect>"
    f'<Stream url="{ESCAPED_JOIN_URL}" bidirectionalMode="rtp" codec="L16" '
    'bidirectionalCodec="L16" bidirectionalSamplingRate="16000" /></Connect></Response>',
    "plivo": '<Response><Stream bidirectional="true" contentType="audio/x-l16;rate=16000" '
    f'keepCallAlive="true">{ESCAPED_JOIN_URL}</Stream></Response>',
}


def expected_metadata(provider: ProviderCase) -> dict[str, str]:
    return {
        "provider": provider.name,
        "providerCallId": provider.fields()[provider.call_id_field],
        "callerNumber": CALLER,
        "calledNumber": CALLED,
    }


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_inline_call_is_created_and_streamed(
    provider: ProviderCase, method: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").respond(
        201, json={"callId": "c-1", "joinUrl": JOIN_URL, "created": "2026-11-24T10:00:00Z"}
    )
    async with running_app(make_settings(telnyx_allow_get=True)) as client:
        response = await provider.webhook(provider.fields(), method=method).send(client)

    assert response.status_code == 200
    assert response.text == STREAM_XML[provider.name]
    assert response.headers["content-type"].split(";")[0] in ("text/xml", "application/xml")
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == "test-ultravox-key-0123456789"
    assert json.loads(sent.content) == {
        "firstSpeakerSettings": {"agent": {}},
        "systemPrompt": DEFAULT_SYSTEM_PROMPT,
        "metadata": expected_metadata(provider),
        "medium": {provider.name: {}},
    }


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_agent_call_is_created_with_template_context(
    provider: ProviderCase, method: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post(f"/agents/{AGENT_ID}/calls").respond(
        201, json={"callId": "c-2", "joinUrl": JOIN_URL}
    )
    settings = make_settings(
        ultravox_agent_id=AGENT_ID,
        ultravox_call_options='{"maxDuration": "600s", "metadata": {"team": "sales"}}',
        telnyx_allow_get=True,
    )
    async with running_app(settings) as client:
        response = await provider.webhook(provider.fields(), method=method).send(client)

    assert response.status_code == 200
    assert response.text == STREAM_XML[provider.name]
    assert json.loads(route.calls.last.request.content) == {
        "firstSpeakerSettings": {"agent": {}},
        "maxDuration": "600s",
        "metadata": {"team": "sales", **expected_metadata(provider)},
        "medium": {provider.name: {}},
        "templateContext": {
            "callerNumber": CALLER,
            "calledNumber": CALLED,
            "provider": provider.name,
        },
    }


async def test_inline_call_carries_voice_model_and_options(ultravox: respx.MockRouter) -> None:
    from tests.conftest import twilio_fields, twilio_webhook

    route = ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": JOIN_URL})
    settings = make_settings(
        ultravox_system_prompt="You sell bicycles.",
        ultravox_voice="Mark",
        ultravox_model="fixie-ai/ultravox",
        ultravox_call_options='{"temperature": 0.3, "firstSpeakerSettings": {"user": {}}}',
    )
    async with running_app(settings) as client:
        await twilio_webhook(twilio_fields()).send(client)

    body = json.loads(route.calls.last.request.content)
    assert body == {
        "firstSpeakerSettings": {"user": {}},
        "systemPrompt": "You sell bicycles.",
        "voice": "Mark",
        "model": "fixie-ai/ultravox",
        "temperature": 0.3,
        "metadata": {
            "provider": "twilio",
            "providerCallId": "CA0123456789abcdef0123456789abcdef",
            "callerNumber": CALLER,
            "calledNumber": CALLED,
        },
        "medium": {"twilio": {}},
    }


async def test_telnyx_codec_and_rate_come_from_settings(ultravox: respx.MockRouter) -> None:
    from tests.conftest import telnyx_fields, telnyx_webhook

    ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": "wss://u.test/j"})
    settings = make_settings(telnyx_stream_codec="PCMU", telnyx_stream_sampling_rate=8000)
    async with running_app(settings) as client:
        response = await telnyx_webhook(telnyx_fields()).send(client)
    assert response.text == (
        "<?xml version='1.0' encoding='utf-8'?>\n<Response><Connect>"
        '<Stream url="wss://u.test/j" bidirectionalMode="rtp" codec="PCMU" '
        'bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000" /></Connect></Response>'
    )


async def test_plivo_content_type_comes_from_settings(ultravox: respx.MockRouter) -> None:
    from tests.conftest import plivo_fields, plivo_webhook

    ultravox.post("/calls").respond(201, json={"callId": "c", "joinUrl": "wss://u.test/j"})
    settings = make_settings(plivo_stream_content_type="audio/x-mulaw;rate=8000")
    async with running_app(settings) as client:
        response = await plivo_webhook(plivo_fields()).send(client)
    assert response.text == (
        '<Response><Stream bidirectional="true" contentType="audio/x-mulaw;rate=8000" '
        'keepCallAlive="true">wss://u.test/j</Stream></Response>'
    )


async def test_unknown_provider_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/acme/incoming", content=b"CallSid=1")
    assert response.status_code == 404
