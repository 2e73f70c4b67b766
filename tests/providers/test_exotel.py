"""Exotel's Voicebot applet fetching its stream URL: the exact Ultravox request out, the exact
JSON back; a secret in the URL's path, an address allow-list and a rate limit in place of a
signature, and every refusal free of Ultravox calls."""

import json
import logging
from pathlib import Path

import httpx
import pytest
import respx

from app.logs import EventFormatter
from app.settings import DEFAULT_SYSTEM_PROMPT
from tests.conftest import AGENT_ID, JOIN_URL, created_call, running_app
from tests.providers.exotel_helpers import (
    CALL_FROM,
    CALL_TO,
    CALLED_E164,
    CALLER_E164,
    EXOTEL_CALL_SID,
    EXOTEL_TOKEN,
    ROTATED_TOKEN,
    exotel_fields,
    exotel_request,
    exotel_settings,
)

STREAM = {"url": JOIN_URL}
FALLBACK = {
    "outcome": "fallback",
    "detail": "no agent can take this call now; the flow's next applet takes it",
}
REJECTED = {
    "outcome": "rejected",
    "detail": "no agent answers this number; the flow's next applet takes the call",
}
ENCODINGS = ["query", "form", "json"]


def metric(client: httpx.AsyncClient, outcome: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "bridge_webhooks_total", {"provider": "exotel", "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_voicebot_request_creates_the_call_and_gets_its_join_url(
    encoding: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        response = await exotel_request(exotel_fields(), encoding).send(client)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == STREAM
    assert json.loads(route.calls.last.request.content) == {
        "firstSpeakerSettings": {"agent": {}},
        "systemPrompt": DEFAULT_SYSTEM_PROMPT,
        "metadata": {
            "provider": "exotel",
            "providerCallId": EXOTEL_CALL_SID,
            "callerNumber": CALLER_E164,
            "calledNumber": CALLED_E164,
        },
        "medium": {"exotel": {}},
    }


@pytest.mark.parametrize(
    ("fields", "caller", "called"),
    [
        # The older applets' names.
        ({"From": CALL_FROM, "To": CALL_TO}, CALLER_E164, CALLED_E164),
        # E.164, the international 00 prefix, and separators.
        (
            {"CallFrom": "+1 500 555 0006", "CallTo": "0091-1500-555001"},
            "+15005550006",
            CALLED_E164,
        ),
        # A withheld caller is passed on as the word Exotel sends.
        ({"CallFrom": "anonymous", "CallTo": CALL_TO}, "anonymous", CALLED_E164),
    ],
)
async def test_numbers_in_any_form_exotel_writes_are_read_as_e164(
    fields: dict[str, str], caller: str, called: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        response = await exotel_request({"CallSid": EXOTEL_CALL_SID, **fields}).send(client)

    assert response.status_code == 200
    metadata = json.loads(route.calls.last.request.content)["metadata"]
    assert (metadata["callerNumber"], metadata["calledNumber"]) == (caller, called)


async def test_default_country_decides_what_national_numbers_mean(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings(exotel_default_country="SG")) as client:
        await exotel_request(exotel_fields()).send(client)

    metadata = json.loads(route.calls.last.request.content)["metadata"]
    assert (metadata["callerNumber"], metadata["calledNumber"]) == (
        "+651500555006",
        "+651500555001",
    )


async def test_routes_file_routes_exotel_numbers_like_any_other(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n"
        f"  - name: india\n    number: '{CALLED_E164}'\n    provider: exotel\n"
        f"    agent: {{id: {AGENT_ID}}}\n"
    )
    route = ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    async with running_app(exotel_settings(routes_file=routes)) as client:
        routed = await exotel_request(exotel_fields()).send(client)
        unrouted = await exotel_request(
            exotel_fields("c0ffee00c0ffee00c0ffee00c0ffee00", CallTo="01500555009")
        ).send(client)

    assert routed.json() == STREAM
    body = json.loads(route.calls.last.request.content)
    assert body["medium"] == {"exotel": {}}
    assert body["templateContext"]["calledNumber"] == CALLED_E164
    # No route (no default): the flow moves on, and no call is created.
    assert (unrouted.status_code, unrouted.json()) == (404, REJECTED)
    assert route.call_count == 1


# --- the URL's token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [None, "wrong", EXOTEL_TOKEN[:-1], EXOTEL_TOKEN + "x", EXOTEL_TOKEN.upper(), "x" * 5000],
)
@pytest.mark.parametrize("encoding", ["query", "json"])
async def test_request_without_the_right_token_is_refused_and_creates_no_call(
    token: str | None, encoding: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        response = await exotel_request(exotel_fields(), encoding, token=token).send(client)

    assert response.status_code == 403
    assert route.call_count == 0


async def test_every_rotated_token_is_accepted(ultravox: respx.MockRouter) -> None:
    ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        first = await exotel_request(exotel_fields(), token=EXOTEL_TOKEN).send(client)
        second = await exotel_request(
            exotel_fields("0123456789abcdef0123456789abcdef"), token=ROTATED_TOKEN
        ).send(client)

    assert (first.json(), second.json()) == (STREAM, STREAM)


async def test_without_tokens_exotel_is_unavailable(ultravox: respx.MockRouter) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings(exotel_url_tokens="")) as client:
        response = await exotel_request(exotel_fields()).send(client)
        ready = (await client.get("/readyz")).json()["providers"]["exotel"]

    assert response.status_code == 503
    assert route.call_count == 0
    assert ready is False


async def test_other_providers_take_no_key_in_their_path(ultravox: respx.MockRouter) -> None:
    async with running_app(exotel_settings()) as client:
        response = await client.post(f"/twilio/incoming/{EXOTEL_TOKEN}")
    assert response.status_code == 404


async def test_the_token_never_reaches_the_logs(
    ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    ultravox.post("/calls").mock(side_effect=[created_call(), httpx.Response(500)])
    caplog.set_level(logging.DEBUG)
    async with running_app(exotel_settings()) as client:
        await exotel_request(exotel_fields()).send(client)  # answered
        await exotel_request(exotel_fields(), token=ROTATED_TOKEN).send(client)  # duplicate
        await exotel_request(exotel_fields(), token=ROTATED_TOKEN + "0").send(client)  # refused
        await exotel_request(exotel_fields("1" * 32), "form").send(client)  # fallback
        await exotel_request({"CallSid": "2" * 32}, "json").send(client)  # malformed

    formatter = EventFormatter(as_json=True, mask_numbers=True)
    # The test's own client logs the URLs it requests; the service's lines are the others.
    service = [
        record for record in caplog.records if "http://bridge.test" not in record.getMessage()
    ]
    logged = "\n".join(formatter.format(record) for record in service)
    assert "webhook.answered" in logged and "webhook.refused" in logged
    assert "webhook.fallback" in logged and "webhook.duplicate" in logged
    assert EXOTEL_TOKEN not in logged
    assert ROTATED_TOKEN not in logged


# --- the address allow-list --------------------------------------------------------------------


async def _from_address(address: str, settings_ips: str) -> tuple[int, int]:
    """The status of one request from `address`, and the Ultravox calls it made."""
    from app.main import create_app

    settings = exotel_settings(exotel_allowed_ips=settings_ips)
    app = create_app(settings)
    with respx.mock(base_url="https://ultravox.test/api", assert_all_called=False) as ultravox:
        route = ultravox.post("/calls").mock(return_value=created_call())
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client,
        ):
            response = await exotel_request(exotel_fields()).send(client)
        return response.status_code, route.call_count


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        ("203.0.113.9", "203.0.113.0/24", (200, 1)),
        ("2001:db8::5", "198.51.100.7,2001:db8::/32", (200, 1)),
        ("198.51.100.8", "203.0.113.0/24,198.51.100.7", (403, 0)),
        ("2001:db9::5", "2001:db8::/32", (403, 0)),
    ],
)
async def test_allowed_ips_admit_only_their_networks(
    address: str, allowed: str, expected: tuple[int, int]
) -> None:
    assert await _from_address(address, allowed) == expected


async def test_allowed_ips_read_the_address_a_trusted_proxy_forwards() -> None:
    """Through uvicorn's proxy-headers middleware, as `serve` runs the app: the proxy is
    believed only when FORWARDED_ALLOW_IPS names it."""
    from app.main import create_app
    from app.server import uvicorn_config

    async def status(forwarded_allow_ips: str) -> tuple[int, int]:
        settings = exotel_settings(
            exotel_allowed_ips="203.0.113.0/24", forwarded_allow_ips=forwarded_allow_ips
        )
        app = create_app(settings)
        config = uvicorn_config(app, settings)
        config.load()
        request = exotel_request(exotel_fields())
        request.headers["X-Forwarded-For"] = "203.0.113.9"
        with respx.mock(base_url="https://ultravox.test/api", assert_all_called=False) as ultravox:
            route = ultravox.post("/calls").mock(return_value=created_call())
            transport = httpx.ASGITransport(app=config.loaded_app, client=("10.0.0.7", 40000))
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client,
            ):
                response = await request.send(client)
            return response.status_code, route.call_count

    assert await status("10.0.0.7") == (200, 1)
    assert await status("10.0.0.8") == (403, 0)


# --- repeats, the rate limit, the fallback -----------------------------------------------------


async def test_a_repeated_callsid_gets_the_same_join_url_and_no_second_call(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        first = await exotel_request(exotel_fields(), "query").send(client)
        repeat = await exotel_request(exotel_fields(), "json").send(client)

    assert first.json() == repeat.json() == STREAM
    assert route.call_count == 1


async def test_a_repeat_after_the_join_window_gets_no_join_url(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    settings = exotel_settings(dedupe_join_window_seconds=0.05)
    async with running_app(settings) as client:
        await exotel_request(exotel_fields()).send(client)
        import asyncio

        await asyncio.sleep(0.1)
        late = await exotel_request(exotel_fields()).send(client)

    assert (late.status_code, late.json()) == (404, REJECTED)
    assert route.call_count == 1


async def test_past_the_rate_limit_requests_are_refused_without_a_call(
    ultravox: respx.MockRouter,
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    settings = exotel_settings(exotel_rate_limit_per_second=0.001, exotel_rate_limit_burst=2)
    async with running_app(settings) as client:
        limited_before = metric(client, "rate_limited")
        statuses = [
            (await exotel_request(exotel_fields(f"{n:032x}")).send(client)) for n in range(4)
        ]
        # A stranger's requests are refused by the token before they reach the limit.
        stranger = await exotel_request(exotel_fields(), token="wrong").send(client)

    assert [response.status_code for response in statuses] == [200, 200, 429, 429]
    assert statuses[2].headers["retry-after"] == "1"
    assert stranger.status_code == 403
    assert route.call_count == 2
    assert metric(client, "rate_limited") - limited_before == 2


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500), httpx.Response(400, json={"detail": "bad"}), httpx.ConnectError("down")],
)
async def test_when_ultravox_fails_the_answer_moves_the_flow_on_and_counts_a_fallback(
    failure: httpx.Response | Exception, ultravox: respx.MockRouter
) -> None:
    ultravox.post("/calls").mock(side_effect=[failure] * 10)
    async with running_app(exotel_settings(ultravox_deadline_seconds=0.5)) as client:
        before = metric(client, "fallback")
        response = await exotel_request(exotel_fields()).send(client)

    assert response.status_code == 503
    assert response.json() == FALLBACK
    assert "url" not in response.json()
    assert metric(client, "fallback") - before == 1


# --- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (exotel_request({"CallFrom": CALL_FROM, "CallTo": CALL_TO}), "missing field(s): CallSid"),
        (exotel_request({"CallSid": EXOTEL_CALL_SID, "CallTo": CALL_TO}), "CallFrom or From"),
        (exotel_request({"CallSid": EXOTEL_CALL_SID, "CallFrom": CALL_FROM}), "CallTo or To"),
        (exotel_request(exotel_fields("short")), "not an Exotel call id"),
        (exotel_request(exotel_fields("a" * 65)), "not an Exotel call id"),
        # Devanagari digits look like a number to str.isdigit; no network dials them.
        (exotel_request(exotel_fields(CallFrom="०९८७६५४३२१०")), "ASCII digits"),
        (exotel_request(exotel_fields(CallTo="0" + "1" * 40)), "too long"),
        (exotel_request(exotel_fields(CallTo="0123")), "ASCII digits"),
        (exotel_request(exotel_fields(CallTo="sip:bot@example.com")), "ASCII digits"),
    ],
)
async def test_malformed_request_is_refused_and_creates_no_call(
    request_: object, reason: str, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        response = await request_.send(client)  # type: ignore[attr-defined]

    assert response.status_code == 400
    assert reason in response.text
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"[1, 2]"),
        ("application/json", b"{not json"),
        ("application/json", b"[" * 50000),
        ("application/json", json.dumps({f"f{n}": "x" for n in range(201)}).encode()),
    ],
)
async def test_body_that_is_not_a_json_object_is_refused(
    content_type: str, body: bytes, ultravox: respx.MockRouter
) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        response = await client.post(
            f"/exotel/incoming/{EXOTEL_TOKEN}", content=body, headers={"content-type": content_type}
        )

    assert response.status_code in (400, 413)
    assert route.call_count == 0


async def test_a_field_in_both_query_and_body_is_refused(ultravox: respx.MockRouter) -> None:
    route = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(exotel_settings()) as client:
        response = await client.post(
            f"/exotel/incoming/{EXOTEL_TOKEN}?CallTo=01500555009",
            json=exotel_fields(),
        )

    assert (response.status_code, response.text) == (400, "field CallTo is repeated\n")
    assert route.call_count == 0
