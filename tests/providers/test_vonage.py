"""Vonage's webhooks: JWT verification, the NCCO answers, the single-use media session and the
events endpoint."""

import json
import time

import httpx
import jwt
import pytest
import respx
import websockets

from app.config import Settings
from app.relay.medium import server_websocket_medium
from app.settings import DEFAULT_SYSTEM_PROMPT
from tests.conftest import (
    CALLED,
    CALLER,
    Webhook,
    created_call,
    make_settings,
    running_app,
)
from tests.relay.fakes import (
    PUBLIC_BASE_URL,
    VONAGE_SECRET,
    VONAGE_UUID,
    fake_ultravox,
    served,
    signed_payload,
    vonage_fields,
    vonage_token,
    vonage_webhook,
)

FALLBACK_NUMBER = "+15005550009"


def vonage_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "vonage_signature_secret": VONAGE_SECRET,
        "public_base_url": PUBLIC_BASE_URL,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_answer_is_an_ncco_connecting_a_single_use_media_socket(
    method: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(vonage_settings()) as client:
        response = await vonage_webhook(vonage_fields(), method=method).send(client)
        store = client.app.state.store  # type: ignore[attr-defined]

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        ncco = response.json()
        uri = ncco[0]["endpoint"][0]["uri"]
        reference = uri.rsplit("/", 1)[1]
        assert uri == f"wss://bridge.test/vonage/media/{reference}"
        assert len(reference) >= 40  # 32 random bytes, URL-safe base64
        assert ncco == [
            {
                "action": "connect",
                "eventUrl": ["https://bridge.test/vonage/events"],
                "endpoint": [
                    {
                        "type": "websocket",
                        "uri": uri,
                        "content-type": "audio/l16;rate=16000",
                        "headers": {"call_id": VONAGE_UUID},
                    }
                ],
            }
        ]
        session = json.loads(await store.get(f"relay:vonage:{reference}"))
        assert session == {
            "call_id": VONAGE_UUID,
            "ultravox_call_id": "3f1c2d4e-0000-4000-8000-000000000001",
            "join_url": "wss://voice.ultravox.test/calls/3f1c/join?token=abc&x=1",
        }
    assert json.loads(route.calls.last.request.content) == {
        "firstSpeakerSettings": {"agent": {}},
        "systemPrompt": DEFAULT_SYSTEM_PROMPT,
        "metadata": {
            "provider": "vonage",
            "providerCallId": VONAGE_UUID,
            "callerNumber": CALLER,
            "calledNumber": CALLED,
        },
        "medium": {
            "serverWebSocket": {
                "inputSampleRate": 16000,
                "outputSampleRate": 16000,
                "clientBufferSizeMs": 30000,
                "mediaIdleTimeout": "45s",
            }
        },
    }


async def test_8khz_asks_ultravox_for_8khz_and_tells_vonage_the_same(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(vonage_settings(vonage_sample_rate=8000)) as client:
        response = await vonage_webhook(vonage_fields()).send(client)
    assert response.json()[0]["endpoint"][0]["content-type"] == "audio/l16;rate=8000"
    sent = json.loads(route.calls.last.request.content)
    assert sent["medium"] == server_websocket_medium(8000, "45s")


def forged(kind: str) -> Webhook:
    body = signed_payload(vonage_fields())
    tokens = {
        "wrong_secret": vonage_token(body, secret="another-secret-0123456789abcdef0123"),
        "wrong_payload_hash": vonage_token(body, payload_hash="0" * 64),
        "stale": vonage_token(body, issued_at=time.time() - 3600),
        "wrong_issuer": vonage_token(body, iss="Someone"),
        "not_a_jwt": "not.a.jwt",
        # PyJWT takes a numeric string for `iat`; the age check then compared a str to a float.
        "iat_as_string": vonage_token(body, iat=str(int(time.time()))),
    }
    if kind == "missing":
        webhook = vonage_webhook(vonage_fields(), method="POST")
        del webhook.headers["Authorization"]
        return webhook
    return vonage_webhook(vonage_fields(), method="POST", token=tokens[kind])


@pytest.mark.parametrize(
    "kind",
    [
        "wrong_secret",
        "wrong_payload_hash",
        "stale",
        "wrong_issuer",
        "not_a_jwt",
        "iat_as_string",
        "missing",
    ],
)
async def test_forged_webhook_is_refused_without_creating_a_call(
    kind: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(vonage_settings()) as client:
        response = await forged(kind).send(client)
    assert response.status_code == 403
    assert route.call_count == 0


async def test_a_body_changed_after_signing_is_refused(ultravox: respx.MockRouter) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    webhook = vonage_webhook(vonage_fields(), method="POST")
    webhook.content = webhook.content.replace(CALLED.lstrip("+").encode(), b"15005550002")
    async with running_app(vonage_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 403
    assert route.call_count == 0


async def test_a_get_whose_query_differs_from_the_signed_one_is_refused(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    webhook = vonage_webhook(vonage_fields())
    webhook.url = webhook.url.replace(CALLED.lstrip("+"), "15005550002")
    async with running_app(vonage_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 403
    assert route.call_count == 0


async def test_a_post_body_hashed_as_sent_is_accepted(ultravox: respx.MockRouter) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    body = json.dumps(vonage_fields(), indent=2).encode()  # not the compact form
    webhook = Webhook(
        "POST",
        "http://bridge.test/vonage/incoming",
        {"content-type": "application/json", "Authorization": f"Bearer {vonage_token(body)}"},
        body,
    )
    async with running_app(vonage_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 200


async def test_a_rotated_secret_still_verifies(ultravox: respx.MockRouter) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    settings = vonage_settings(
        vonage_signature_secret=f"new-secret-0123456789abcdef0123456789,{VONAGE_SECRET}"
    )
    async with running_app(settings) as client:
        response = await vonage_webhook(vonage_fields()).send(client)
    assert response.status_code == 200


async def test_without_public_base_url_vonage_is_unavailable(ultravox: respx.MockRouter) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(vonage_settings(public_base_url=None)) as client:
        response = await vonage_webhook(vonage_fields()).send(client)
    assert response.status_code == 503
    assert "PUBLIC_BASE_URL" in response.text
    assert route.call_count == 0


@pytest.mark.parametrize("dial_number", [None, FALLBACK_NUMBER])
async def test_ultravox_failing_gives_the_fallback_ncco(
    dial_number: str | None, ultravox: respx.MockRouter
) -> None:
    ultravox.post("/calls").mock(return_value=httpx.Response(400, json={"detail": "bad"}))
    settings = vonage_settings(fallback_message="Call us later.", fallback_dial_number=dial_number)
    async with running_app(settings) as client:
        response = await vonage_webhook(vonage_fields()).send(client)
    assert response.status_code == 200
    expected: list[dict[str, object]] = [{"action": "talk", "text": "Call us later."}]
    if dial_number:
        expected.append(
            {"action": "connect", "endpoint": [{"type": "phone", "number": "15005550009"}]}
        )
    assert response.json() == expected


async def test_unknown_and_reused_session_references_are_refused(
    ultravox: respx.MockRouter,
) -> None:
    async with fake_ultravox() as fake, running_app(vonage_settings()) as client:
        ultravox.post("/calls").mock(return_value=created_call(join_url=fake.url))
        answer = await vonage_webhook(vonage_fields()).send(client)
        uri = answer.json()[0]["endpoint"][0]["uri"]
        async with served(client.app) as origin:  # type: ignore[attr-defined]
            local = uri.replace("wss://bridge.test", origin)
            with pytest.raises(websockets.InvalidStatus) as unknown:
                await websockets.connect(origin + "/vonage/media/not-a-session")
            assert unknown.value.response.status_code == 403
            first = await websockets.connect(local)
            with pytest.raises(websockets.InvalidStatus) as reused:
                await websockets.connect(local)
            assert reused.value.response.status_code == 403
            await first.close()
    assert ultravox.routes[0].call_count == 1  # only the one webhook created a call


async def test_signed_events_are_recorded(caplog: pytest.LogCaptureFixture) -> None:
    event = {**vonage_fields(), "status": "answered", "direction": "inbound"}
    webhook = vonage_webhook(event, method="POST", path="/vonage/events")
    async with running_app(vonage_settings()) as client:
        with caplog.at_level("INFO", logger="app.media"):
            response = await webhook.send(client)
        forged_event = vonage_webhook(
            event, method="POST", path="/vonage/events", token=vonage_token(b"other")
        )
        refused = await forged_event.send(client)
    assert response.status_code == 204
    assert refused.status_code == 403
    recorded = [r for r in caplog.records if r.getMessage() == "call.event"]
    assert [r.fields for r in recorded] == [  # type: ignore[attr-defined]
        {
            "provider": "vonage",
            "call_id": VONAGE_UUID,
            "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
            "status": "answered",
            "direction": "inbound",
            "from": CALLER.lstrip("+"),
            "to": CALLED.lstrip("+"),
        }
    ]


async def test_events_of_a_provider_without_them_are_not_found() -> None:
    async with running_app(vonage_settings()) as client:
        response = await client.post("/twilio/events")
    assert response.status_code == 404


async def test_a_rejected_call_gets_an_empty_ncco() -> None:
    async with running_app(vonage_settings()) as client:
        adapter = client.app.state.bridge.adapters["vonage"]  # type: ignore[attr-defined]
    answer = adapter.reject_answer()
    assert (answer.body, answer.media_type) == (b"[]", "application/json")


async def test_an_empty_media_idle_timeout_is_left_out_of_the_medium(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(vonage_settings(relay_media_idle_timeout="")) as client:
        await vonage_webhook(vonage_fields()).send(client)
    assert json.loads(route.calls.last.request.content)["medium"] == {
        "serverWebSocket": {
            "inputSampleRate": 16000,
            "outputSampleRate": 16000,
            "clientBufferSizeMs": 30000,
        }
    }


async def test_a_get_signed_without_payload_hash_is_refused(ultravox: respx.MockRouter) -> None:
    # Without the hash the JWT would vouch for any query string: any call, any numbers.
    route = ultravox.post("/calls").mock(return_value=created_call())
    token = jwt.encode(
        {"iat": int(time.time()), "jti": "j-1", "iss": "Vonage"}, VONAGE_SECRET, algorithm="HS256"
    )
    async with running_app(vonage_settings()) as client:
        response = await vonage_webhook(vonage_fields(), token=token).send(client)
    assert response.status_code == 403
    assert response.text == "Vonage JWT lacks payload_hash\n"
    assert route.call_count == 0


async def test_a_get_with_a_repeated_field_is_refused(ultravox: respx.MockRouter) -> None:
    # The hash is over one value per field; a second `uuid` must not slip past it into the call.
    route = ultravox.post("/calls").mock(return_value=created_call())
    webhook = vonage_webhook(vonage_fields())
    webhook.url += "&uuid=aaaaaaaa-0000-4000-8000-000000000009"
    async with running_app(vonage_settings()) as client:
        response = await webhook.send(client)
    assert response.status_code == 400
    assert response.text == "field uuid is repeated\n"
    assert route.call_count == 0


async def test_a_completed_event_ends_the_calls_record(ultravox: respx.MockRouter) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    token = "records-api-token-0123456789"
    settings = vonage_settings(bridge_api_tokens=token)
    completed = {**vonage_fields(), "status": "completed", "duration": "37"}
    async with running_app(settings) as client:
        assert (
            await vonage_webhook(vonage_fields(), method="POST").send(client)
        ).status_code == 200
        await client.app.state.records._queue.join()  # type: ignore[attr-defined]
        dtmf = {"uuid": VONAGE_UUID, "dtmf": {"digits": "5"}}  # an event without a status
        webhook = vonage_webhook(dtmf, method="POST", path="/vonage/events")
        assert (await webhook.send(client)).status_code == 204
        webhook = vonage_webhook(completed, method="POST", path="/vonage/events")
        assert (await webhook.send(client)).status_code == 204
        listing = await client.get("/api/calls", headers={"Authorization": f"Bearer {token}"})
    [record] = listing.json()["calls"]
    assert (record["provider"], record["providerCallId"]) == ("vonage", VONAGE_UUID)
    assert (record["state"], record["endedBy"], record["durationSeconds"]) == (
        "ended",
        "provider",
        37.0,
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_event_replayed_to_the_answer_url_is_refused(
    method: str, ultravox: respx.MockRouter
) -> None:
    # Vonage's JWT names no URL: only the payload tells an event from an answer webhook.
    route = ultravox.post("/calls").mock(return_value=created_call())
    event = {**vonage_fields(), "status": "answered", "timestamp": "2026-11-24T10:00:00.000Z"}
    captured = vonage_webhook(event, method=method, path="/vonage/events")
    replayed = Webhook(method, captured.url.replace("/events", "/incoming"), captured.headers)
    replayed.content = captured.content
    async with running_app(vonage_settings()) as client:
        logged = await captured.send(client)
        response = await replayed.send(client)
    assert logged.status_code == 204
    assert response.status_code == 403
    assert response.text == (
        "this Vonage JWT signed a call event (status, timestamp), not an answer webhook\n"
    )
    assert route.call_count == 0


async def test_a_repeated_answer_webhook_gets_no_second_media_socket(
    ultravox: respx.MockRouter,
) -> None:
    async with fake_ultravox() as fake, running_app(vonage_settings()) as client:
        ultravox.post("/calls").mock(return_value=created_call(join_url=fake.url))
        webhook = vonage_webhook(vonage_fields())
        uris = [
            (await webhook.send(client)).json()[0]["endpoint"][0]["uri"],
            (await webhook.send(client)).json()[0]["endpoint"][0]["uri"],  # replayed
        ]
        assert uris[0] != uris[1]  # each answer mints its own single-use reference
        async with served(client.app) as origin:  # type: ignore[attr-defined]
            first = await websockets.connect(uris[0].replace("wss://bridge.test", origin))
            with pytest.raises(websockets.InvalidStatus) as second:
                await websockets.connect(uris[1].replace("wss://bridge.test", origin))
            assert second.value.response.status_code == 403
            await first.close()
    assert ultravox.routes[0].call_count == 1
