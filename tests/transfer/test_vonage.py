"""Vonage transfers end to end: the answer webhook, the relayed call, the agent's tool call,
Vonage's Voice API (stood in with respx, its application JWT checked with the key's public half)
and Vonage's signed events from the transfer's `connect`."""

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
import respx
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings, load_settings
from app.providers.vonage.transfer import VonageTransfer
from app.routing import load_routing_table
from app.settings import ConfigError
from app.transfer.flow import check_transfer_settings
from tests.conftest import API_URL, BASE_URL, Webhook, running_app
from tests.relay.fakes import (
    VONAGE_SECRET,
    VONAGE_UUID,
    PlatformCall,
    eventually,
    fake_ultravox,
    served,
    vonage_fields,
    vonage_token,
    vonage_webhook,
)
from tests.transfer.conftest import (
    FIRST_CALL,
    SECOND_CALL,
    ToolAccess,
    call_tool,
    expected_history,
    second_call_body,
    tool_access,
    transfer_id_in,
    transfer_settings,
    ultravox_history,
)

VONAGE_API = "https://vonage.test"
APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = PRIVATE_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
CALL_URL = f"{VONAGE_API}/v1/calls/{VONAGE_UUID}"

ROUTES = """
routes:
  - name: support
    provider: vonage
    number: "+15005550001"
    inline:
      systemPrompt: You answer the support line.
    transfer:
      targets:
        sales:
          number: "+15005550100"
          description: the sales team
          ring_timeout_seconds: 20
        desk:
          sip: "sip:desk@pbx.example.com"
"""


def vonage_transfer_settings(path: Path, routes: str = ROUTES, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "public_base_url": "https://bridge.test",
        "vonage_signature_secret": VONAGE_SECRET,
        "vonage_application_id": APPLICATION_ID,
        # As an environment variable holds it: one line, the line breaks written as \n.
        "vonage_private_key": PRIVATE_PEM.replace("\n", "\\n"),
        "vonage_api_url": VONAGE_API,
        "twilio_auth_token": "",
    }
    values.update(overrides)
    return transfer_settings(path, routes, **values)


def creates_with(apis: respx.MockRouter, first_join: str, second_join: str) -> respx.Route:
    return apis.post(f"{API_URL}/calls").mock(
        side_effect=[
            httpx.Response(201, json={"callId": FIRST_CALL, "joinUrl": first_join}),
            httpx.Response(201, json={"callId": SECOND_CALL, "joinUrl": second_join}),
        ]
    )


def event(transfer_id: str, status: str) -> Webhook:
    """Vonage's signed event from the transfer's `connect` (the person's leg)."""
    fields = {
        "uuid": "aaaaaaaa-0000-4000-8000-0000000000b2",
        "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "status": status,
        "direction": "outbound",
        "from": "15005550001",
        "to": "15005550100",
        "timestamp": "2026-12-02T10:00:00.000Z",
    }
    return vonage_webhook(fields, method="POST", path=f"/transfer/vonage/{transfer_id}/dialed")


async def answer(client: httpx.AsyncClient, creates: respx.Route) -> tuple[ToolAccess, str]:
    response = await vonage_webhook(vonage_fields(), method="POST").send(client)
    assert response.status_code == 200
    uri: str = response.json()[0]["endpoint"][0]["uri"]
    return tool_access(creates.calls[0].request), uri


async def test_cold_transfer_moves_the_caller_to_a_new_ncco_and_ends_the_relayed_agent(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    update = apis.put(CALL_URL).respond(204)
    async with fake_ultravox() as agent:
        creates = creates_with(apis, agent.url, agent.url)
        async with running_app(vonage_transfer_settings(tmp_path / "r.yaml")) as client:
            access, uri = await answer(client, creates)
            async with served(client.app) as origin:  # type: ignore[attr-defined]
                platform = PlatformCall(
                    await websockets.connect(uri.replace("wss://bridge.test", origin))
                )
                platform.start()
                await platform.socket.send(json.dumps({"event": "websocket:connected"}))
                await agent.connected.wait()

                response = await call_tool(client, access, "sales")
                assert response.status_code == 200
                assert response.json() == {"result": "transferring"}
                assert response.headers["x-ultravox-agent-reaction"] == "listens"
                assert response.headers["x-ultravox-response-type"] == "hang-up"

                # Ultravox ends the agent's call as the tool's answer asks: the relay closes
                # Vonage's media socket, the caller's leg already being in the new NCCO.
                await agent.hang_up()
                await eventually(platform.closed.is_set)

            request = update.calls.last.request
            body = json.loads(request.content)
            transfer_id = transfer_id_in(json.dumps(body))
            assert body == {
                "action": "transfer",
                "destination": {
                    "type": "ncco",
                    "ncco": [
                        {
                            "action": "connect",
                            "from": "15005550001",
                            "timeout": 20,
                            "eventType": "synchronous",
                            "eventUrl": [
                                f"https://bridge.test/transfer/vonage/{transfer_id}/dialed"
                            ],
                            "eventMethod": "POST",
                            "endpoint": [{"type": "phone", "number": "15005550100"}],
                        }
                    ],
                },
            }
            scheme, _, token = request.headers["authorization"].partition(" ")
            claims = jwt.decode(token, PRIVATE_KEY.public_key(), algorithms=["RS256"])
            assert scheme == "Bearer"
            assert claims["application_id"] == APPLICATION_ID
            assert claims["exp"] - claims["iat"] == 300
            assert abs(claims["iat"] - time.time()) < 60
            assert len(claims["jti"]) == 36

            ringing = await event(transfer_id, "ringing").send(client)
            answered = await event(transfer_id, "answered").send(client)
            completed = await event(transfer_id, "completed").send(client)
            metrics = (await client.get("/metrics")).text
    for reply in (ringing, answered, completed):
        assert (reply.status_code, reply.content) == (200, b"")  # overrides no NCCO
    assert creates.call_count == 1  # nobody went back to an agent
    assert (
        'bridge_transfers_total{mode="cold",outcome="connected",provider="vonage"} 1.0' in metrics
    )


@pytest.mark.parametrize("status", ["unanswered", "busy", "timeout", "rejected", "failed"])
async def test_cold_transfer_not_taken_answers_with_a_new_relayed_agent_that_knows_the_call(
    tmp_path: Path, apis: respx.MockRouter, status: str
) -> None:
    apis.put(CALL_URL).respond(204)
    history = ultravox_history(apis)
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    async with running_app(vonage_transfer_settings(tmp_path / "r.yaml")) as client:
        access, _ = await answer(client, creates)
        await call_tool(client, access, "desk")
        put = json.loads(apis.routes[0].calls.last.request.content)
        endpoint = put["destination"]["ncco"][0]["endpoint"]
        assert endpoint == [{"type": "sip", "uri": "sip:desk@pbx.example.com"}]
        transfer_id = transfer_id_in(json.dumps(put))
        first = await event(transfer_id, status).send(client)
        repeat = await event(transfer_id, status).send(client)
        store = client.app.state.store  # type: ignore[attr-defined]

        ncco = first.json()
        uri = ncco[0]["endpoint"][0]["uri"]
        reference = uri.rsplit("/", 1)[1]
        assert ncco == [
            {
                "action": "connect",
                "eventUrl": ["https://bridge.test/vonage/events"],
                "endpoint": [
                    {
                        "type": "websocket",
                        "uri": f"wss://bridge.test/vonage/media/{reference}",
                        "content-type": "audio/l16;rate=16000",
                        "headers": {"call_id": VONAGE_UUID},
                    }
                ],
            }
        ]
        # The new media socket is admitted to the second Ultravox call, once.
        session = json.loads(await store.get(f"relay:vonage:{reference}"))
    assert session == {
        "call_id": VONAGE_UUID,
        "ultravox_call_id": SECOND_CALL,
        "join_url": "wss://voice.ultravox.test/2",
    }
    assert repeat.content == first.content  # the same answer; no third Ultravox call
    assert history.call_count == 1
    assert creates.call_count == 2
    body = second_call_body(creates)
    assert body["initialMessages"] == expected_history()
    assert body["medium"]["serverWebSocket"]["inputSampleRate"] == 16000
    assert "Earlier in this call you tried to transfer the caller to desk" in body["systemPrompt"]


async def test_the_voice_api_refusing_the_transfer_keeps_the_agent(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    apis.put(CALL_URL).respond(401, json={"title": "Unauthorized"})
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    async with running_app(vonage_transfer_settings(tmp_path / "r.yaml")) as client:
        access, _ = await answer(client, creates)
        response = await call_tool(client, access, "sales")
    assert response.json()["result"] == "failed"
    assert response.headers["x-ultravox-agent-reaction"] == "speaks"
    assert "x-ultravox-response-type" not in response.headers  # the agent's call goes on


async def test_forged_transfer_events_are_refused(tmp_path: Path, apis: respx.MockRouter) -> None:
    apis.put(CALL_URL).respond(204)
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    async with running_app(vonage_transfer_settings(tmp_path / "r.yaml")) as client:
        access, _ = await answer(client, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(apis.routes[0].calls.last.request.content.decode())
        forged = event(transfer_id, "busy")
        forged.headers["Authorization"] = "Bearer not-a-jwt"
        refused = await forged.send(client)
    assert refused.status_code == 403
    assert creates.call_count == 1


async def test_vonage_transfers_need_the_application(tmp_path: Path) -> None:
    settings = vonage_transfer_settings(
        tmp_path / "r.yaml", WARM_ROUTES, vonage_application_id=None, vonage_private_key=None
    )
    with pytest.raises(ConfigError) as raised:
        async with running_app(settings):
            pass
    assert str(raised.value) == (
        "invalid configuration:\n"
        "  VONAGE_APPLICATION_ID: is required for transfers of vonage calls\n"
        "  VONAGE_PRIVATE_KEY: is required for transfers of vonage calls"
    )


def test_warm_targets_pass_the_start_up_check_only_where_the_driver_has_warm(
    tmp_path: Path,
) -> None:
    class ColdOnly(VonageTransfer):
        modes = frozenset({"cold"})

    settings = vonage_transfer_settings(tmp_path / "r.yaml", WARM_ROUTES)
    assert settings.routes_file is not None
    routing = load_routing_table(settings.routes_file, settings)
    assert check_transfer_settings(settings, routing, {}, {"vonage": VonageTransfer}) == ["vonage"]
    with pytest.raises(ConfigError) as raised:
        check_transfer_settings(settings, routing, {}, {"vonage": ColdOnly})
    assert str(raised.value) == (
        "invalid configuration:\n  ROUTES_FILE: vonage calls cannot be transferred in warm mode"
    )


def test_a_private_key_that_is_not_pem_is_refused_naming_the_fix() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, ultravox_api_key="k", vonage_private_key="not a key")
    assert str(raised.value) == (
        "invalid configuration:\n"
        "  VONAGE_PRIVATE_KEY: must be the application's private key in PEM form (-----BEGIN "
        "PRIVATE KEY-----, as the Vonage Dashboard downloads it), unencrypted; in one line, "
        "write its line breaks as \\n"
    )


def test_an_application_id_that_is_not_a_uuid_is_refused() -> None:
    with pytest.raises(ConfigError, match="VONAGE_APPLICATION_ID: must be the application's id"):
        load_settings(_env_file=None, ultravox_api_key="k", vonage_application_id="my-app")


WARM_ROUTES = ROUTES.replace(
    "ring_timeout_seconds: 20", "ring_timeout_seconds: 20\n          mode: warm"
)
CALLS_URL = f"{VONAGE_API}/v1/calls"
PERSON_UUID = "aaaaaaaa-0000-4000-8000-0000000000c3"
PERSON_URL = f"{CALLS_URL}/{PERSON_UUID}"
HOLD_MUSIC = "https://media.example.com/hold.mp3"


def signed(transfer_id: str, step: str, body: dict[str, object]) -> Webhook:
    """A Vonage webhook of the person's call, a JSON body signed as Vonage signs it."""
    content = json.dumps(body, separators=(",", ":")).encode()
    return Webhook(
        "POST",
        f"{BASE_URL}/transfer/vonage/{transfer_id}/{step}",
        {"content-type": "application/json", "Authorization": f"Bearer {vonage_token(content)}"},
        content,
    )


def person_event(transfer_id: str, status: str) -> Webhook:
    return signed(
        transfer_id,
        "person",
        {
            "uuid": PERSON_UUID,
            "conversation_uuid": "CON-aaaaaaaa-0000-4000-8000-0000000000c4",
            "status": status,
            "direction": "outbound",
            "from": "15005550001",
            "to": "15005550100",
            "timestamp": "2026-12-02T10:00:00.000Z",
        },
    )


def keypress(transfer_id: str, digits: str, timed_out: bool = False) -> Webhook:
    return signed(
        transfer_id,
        "accept",
        {
            "speech": {"results": []},
            "dtmf": {"digits": digits, "timed_out": timed_out},
            "from": "15005550001",
            "to": "15005550100",
            "uuid": PERSON_UUID,
            "conversation_uuid": "CON-aaaaaaaa-0000-4000-8000-0000000000c4",
            "timestamp": "2026-12-02T10:00:05.000Z",
        },
    )


def whisper_request(transfer_id: str) -> Webhook:
    return signed(
        transfer_id,
        "whisper",
        {
            "from": "15005550001",
            "to": "15005550100",
            "uuid": PERSON_UUID,
            "conversation_uuid": "CON-aaaaaaaa-0000-4000-8000-0000000000c4",
        },
    )


def conversation(transfer_id: str, *, person: bool) -> dict[str, object]:
    return {
        "action": "conversation",
        "name": f"transfer-{transfer_id}",
        "startOnEnter": person,
        "endOnExit": True,
    }


async def test_warm_transfer_holds_the_caller_whispers_and_joins_the_person(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    person = apis.post(CALLS_URL).respond(
        201,
        json={
            "uuid": PERSON_UUID,
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": "CON-aaaaaaaa-0000-4000-8000-0000000000c4",
        },
    )
    caller = apis.put(CALL_URL).respond(204)
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    routes = vonage_transfer_settings(
        tmp_path / "r.yaml", WARM_ROUTES, transfer_hold_music_url=HOLD_MUSIC
    )
    async with running_app(routes) as client:
        access, _ = await answer(client, creates)
        response = await call_tool(client, access, "sales")
        assert response.json() == {"result": "transferring"}
        # The caller's leg is in the conversation: the relayed agent's call is ended.
        assert response.headers["x-ultravox-response-type"] == "hang-up"

        dialled = json.loads(person.calls.last.request.content)
        transfer_id = transfer_id_in(dialled["answer_url"][0])
        base = f"https://bridge.test/transfer/vonage/{transfer_id}"
        assert dialled == {
            "to": [{"type": "phone", "number": "15005550100"}],
            "from": {"type": "phone", "number": "15005550001"},
            "answer_url": [f"{base}/whisper"],
            "answer_method": "POST",
            "event_url": [f"{base}/person"],
            "event_method": "POST",
            "ringing_timer": 20,
        }
        scheme, _, token = person.calls.last.request.headers["authorization"].partition(" ")
        claims = jwt.decode(token, PRIVATE_KEY.public_key(), algorithms=["RS256"])
        assert (scheme, claims["application_id"]) == ("Bearer", APPLICATION_ID)
        assert json.loads(caller.calls.last.request.content) == {
            "action": "transfer",
            "destination": {
                "type": "ncco",
                "ncco": [
                    {**conversation(transfer_id, person=False), "musicOnHoldUrl": [HOLD_MUSIC]}
                ],
            },
        }

        rung = await person_event(transfer_id, "ringing").send(client)
        answered = await person_event(transfer_id, "answered").send(client)
        whisper = await whisper_request(transfer_id).send(client)
        accepted = await keypress(transfer_id, "1").send(client)
        completed = await person_event(transfer_id, "completed").send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
        metrics = (await client.get("/metrics")).text
    for reply in (rung, answered, completed):
        assert (reply.status_code, reply.content) == (200, b"")
    assert whisper.json() == [
        {
            "action": "talk",
            "text": "The assistant is transferring a caller to you. Reason: wants a quote. Ada "
            "wants ten licences. Press 1 to take the call, or any other key to decline.",
            "bargeIn": True,
        },
        {
            "action": "input",
            "type": ["dtmf"],
            "dtmf": {"maxDigits": 1, "timeOut": 8},
            "eventUrl": [f"{base}/accept"],
            "eventMethod": "POST",
        },
    ]
    assert accepted.json() == [conversation(transfer_id, person=True)]
    assert creates.call_count == 1  # nobody went back to an agent
    assert caller.call_count == 1  # put on hold, never moved again
    assert 'bridge_transfers_total{mode="warm",outcome="connected",provider="vonage"} 1.0' in (
        metrics
    )


@pytest.mark.parametrize(
    "ending",
    ["declined", "no-key", "unanswered", "busy", "timeout", "hung-up"],
)
async def test_warm_transfer_not_taken_moves_the_held_caller_to_a_new_relayed_agent(
    tmp_path: Path, apis: respx.MockRouter, ending: str
) -> None:
    person = apis.post(CALLS_URL).respond(201, json={"uuid": PERSON_UUID, "status": "started"})
    caller = apis.put(CALL_URL).respond(204)
    history = ultravox_history(apis)
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    async with running_app(vonage_transfer_settings(tmp_path / "r.yaml", WARM_ROUTES)) as client:
        access, _ = await answer(client, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(person.calls.last.request.content)["answer_url"][0])
        # Without hold music the caller is told to hold, then waits in the conversation.
        assert json.loads(caller.calls.last.request.content)["destination"]["ncco"] == [
            {"action": "talk", "text": "Please hold while I connect you."},
            conversation(transfer_id, person=False),
        ]
        if ending in ("declined", "no-key", "hung-up"):
            await whisper_request(transfer_id).send(client)
        if ending == "declined":
            reply = await keypress(transfer_id, "2").send(client)
        elif ending == "no-key":
            reply = await keypress(transfer_id, "", timed_out=True).send(client)
        else:
            status = "completed" if ending == "hung-up" else ending
            reply = await person_event(transfer_id, status).send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
        # Vonage's later events for the person's call change nothing.
        late = await person_event(transfer_id, "completed").send(client)
        await client.app.state.transfers.idle()  # type: ignore[attr-defined]
        store = client.app.state.store  # type: ignore[attr-defined]

        assert caller.call_count == 2  # on hold, then back to an agent
        moved = json.loads(caller.calls.last.request.content)
        assert moved["action"] == "transfer"
        ncco = moved["destination"]["ncco"]
        uri = ncco[0]["endpoint"][0]["uri"]
        reference = uri.rsplit("/", 1)[1]
        assert ncco == [
            {
                "action": "connect",
                "eventUrl": ["https://bridge.test/vonage/events"],
                "endpoint": [
                    {
                        "type": "websocket",
                        "uri": f"wss://bridge.test/vonage/media/{reference}",
                        "content-type": "audio/l16;rate=16000",
                        "headers": {"call_id": VONAGE_UUID},
                    }
                ],
            }
        ]
        session = json.loads(await store.get(f"relay:vonage:{reference}"))
    if ending in ("declined", "no-key"):
        assert reply.json() == [
            {"action": "talk", "text": "The caller goes back to the assistant. Goodbye."}
        ]
    else:
        assert reply.content == b""
    assert late.content == b""
    assert session["ultravox_call_id"] == SECOND_CALL
    assert history.call_count == 1
    assert creates.call_count == 2
    body = second_call_body(creates)
    assert body["initialMessages"] == expected_history()
    assert "Earlier in this call you tried to transfer the caller to sales" in body["systemPrompt"]


async def test_a_caller_who_cannot_be_held_keeps_the_agent_and_the_person_is_hung_up(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    person = apis.post(CALLS_URL).respond(201, json={"uuid": PERSON_UUID, "status": "started"})
    apis.put(CALL_URL).respond(404, json={"title": "Not Found"})
    cancel = apis.put(PERSON_URL).respond(204)
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    async with running_app(vonage_transfer_settings(tmp_path / "r.yaml", WARM_ROUTES)) as client:
        access, _ = await answer(client, creates)
        response = await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(person.calls.last.request.content)["answer_url"][0])
        # Should the person answer before the hang-up reaches them: nobody is waiting.
        whisper = await whisper_request(transfer_id).send(client)
    assert response.json()["result"] == "failed"
    assert "x-ultravox-response-type" not in response.headers  # the agent's call goes on
    assert json.loads(cancel.calls.last.request.content) == {"action": "hangup"}
    assert whisper.json() == [
        {"action": "talk", "text": "Sorry, the caller is no longer waiting. Goodbye."}
    ]
    assert creates.call_count == 1


async def test_forged_or_replayed_person_callbacks_are_refused(
    tmp_path: Path, apis: respx.MockRouter
) -> None:
    person = apis.post(CALLS_URL).respond(201, json={"uuid": PERSON_UUID, "status": "started"})
    caller = apis.put(CALL_URL).respond(204)
    creates = creates_with(apis, "wss://voice.ultravox.test/first", "wss://voice.ultravox.test/2")
    async with running_app(vonage_transfer_settings(tmp_path / "r.yaml", WARM_ROUTES)) as client:
        access, _ = await answer(client, creates)
        await call_tool(client, access, "sales")
        transfer_id = transfer_id_in(json.loads(person.calls.last.request.content)["answer_url"][0])
        forged = keypress(transfer_id, "1")
        forged.headers["Authorization"] = f"Bearer {vonage_token(b'{}')}"  # another payload
        refused = await forged.send(client)
        stale = keypress(transfer_id, "1")
        stale.headers["Authorization"] = (
            f"Bearer {vonage_token(stale.content, issued_at=time.time() - 3600)}"
        )
        too_old = await stale.send(client)
        unknown = await keypress("no-such-transfer", "1").send(client)
        # The real key press still connects: the refused ones decided nothing.
        accepted = await keypress(transfer_id, "1").send(client)
    assert (refused.status_code, too_old.status_code, unknown.status_code) == (403, 403, 404)
    assert accepted.json() == [conversation(transfer_id, person=True)]
    assert caller.call_count == 1  # held once, never moved by the refused requests
    assert creates.call_count == 1
