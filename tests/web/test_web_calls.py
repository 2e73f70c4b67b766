"""`POST /web/calls` over HTTP: the exact Ultravox request of a web call, and every refusal
(status, message, Retry-After, metric) costing no Ultravox request."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY

from app.web.page import IMPORT_MAP_HASH
from app.web.tokens import mint_token
from tests.conftest import AGENT_ID, CALL_ID, JOIN_URL, created_call, running_app
from tests.web.conftest import ORIGIN, SITE, post_call, web_settings

SECRET = "web-call-secret-for-tests-0123456789abcdef"


def refusals(outcome: str) -> float:
    return REGISTRY.get_sample_value("bridge_web_calls_total", {"outcome": outcome}) or 0.0


def sent_body(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


async def test_inline_web_call_gets_webrtc_medium_web_prompt_and_short_duration(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(
            client, {"route": "support", "context": {"page": "pricing", "name": "Ann"}}
        )
    assert response.status_code == 201
    answer = response.json()
    end_secret = answer.pop("endSecret")
    assert answer == {
        "callId": CALL_ID,
        "joinUrl": JOIN_URL,
        "route": "support",
        "maxDuration": "300s",
    }
    assert len(end_secret) == 43  # 32 random bytes, base64url
    assert response.headers["access-control-allow-origin"] == ORIGIN
    body = sent_body(create)
    call_id = body["metadata"].pop("providerCallId")
    assert call_id.startswith("web-")
    assert body == {
        "systemPrompt": "You answer visitors of the pricing page (web).",
        "voice": "Mark",
        "maxDuration": "300s",
        "firstSpeakerSettings": {"agent": {"text": "Hello Ann, how can I help?"}},
        "metadata": {"team": "support", "provider": "web", "route": "support"},
        "medium": {"webRtc": {}},
    }


async def test_agent_web_call_gets_template_context_without_phone_numbers(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(client, {"route": "sales"})
    assert response.status_code == 201
    body = sent_body(create)
    body["metadata"].pop("providerCallId")
    assert body == {
        "firstSpeakerSettings": {"agent": {}},
        "metadata": {"provider": "web", "route": "sales"},
        "medium": {"webRtc": {}},
        "templateContext": {"team": "sales", "provider": "web"},
        "maxDuration": "300s",
    }


async def test_context_field_left_out_fills_its_placeholder_with_nothing(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post("/calls").mock(return_value=created_call())
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(client, {"route": "support", "context": {"page": "home"}})
    assert response.status_code == 201
    assert sent_body(create)["firstSpeakerSettings"] == {
        "agent": {"text": "Hello , how can I help?"}
    }


async def test_allowed_site_may_start_calls_and_passes_preflight(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    settings = web_settings(tmp_path, web_allowed_origins=SITE)
    async with running_app(settings) as client:
        preflight = await client.options(
            "/web/calls",
            headers={"origin": SITE, "access-control-request-method": "POST"},
        )
        response = await post_call(client, {"route": "sales"}, origin=SITE)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SITE
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert preflight.headers["access-control-allow-headers"] == "content-type"
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == SITE


# --- refusals: none reaches Ultravox -----------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "message"),
    [
        (None, "an Origin header is required: web calls are started by a browser"),
        (SITE, "this site may not start calls: add its origin to WEB_ALLOWED_ORIGINS"),
        ("null", "this site may not start calls: add its origin to WEB_ALLOWED_ORIGINS"),
        (
            "http://bridge.test.evil.example",
            "this site may not start calls: add its origin to WEB_ALLOWED_ORIGINS",
        ),
    ],
)
async def test_request_from_another_site_is_refused(
    tmp_path: Path, ultravox: respx.MockRouter, origin: str | None, message: str
) -> None:
    before = refusals("forbidden_origin")
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(client, {"route": "sales"}, origin=origin)
    assert response.status_code == 403
    assert response.json() == {"detail": message}
    assert "access-control-allow-origin" not in response.headers
    assert refusals("forbidden_origin") == before + 1
    assert not ultravox.calls


async def test_preflight_from_another_site_gets_no_cors_headers(tmp_path: Path) -> None:
    async with running_app(web_settings(tmp_path)) as client:
        response = await client.options(
            "/web/calls", headers={"origin": SITE, "access-control-request-method": "POST"}
        )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("route", ["phone-only", "no-such-route"])
async def test_route_not_open_to_the_web_is_refused(
    tmp_path: Path, ultravox: respx.MockRouter, route: str
) -> None:
    before = refusals("not_found")
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(client, {"route": route})
        page = await client.get(f"/talk/{route}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no route named {route!r} is open to the web"}
    assert page.status_code == 404
    assert refusals("not_found") == before + 1
    assert not ultravox.calls


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"route": "support", "context": {"phone": "+15005550006"}},
            "context fields not accepted by this route: phone (accepted: name, page)",
        ),
        (
            {"route": "sales", "context": {"page": "x"}},
            "context fields not accepted by this route: page (accepted: none)",
        ),
        (
            {"route": "support", "context": {"page": "x" * 501}},
            "context values over 500 characters: page",
        ),
        (
            {"route": "sales", "agentId": "x"},
            "invalid request: agentId: Extra inputs are not permitted",
        ),
        (b"{not json", None),
    ],
)
async def test_malformed_request_is_refused(
    tmp_path: Path, ultravox: respx.MockRouter, body: Any, detail: str | None
) -> None:
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(client, body)
    assert response.status_code == 422
    if detail is not None:
        assert response.json() == {"detail": detail}
    assert not ultravox.calls


async def test_huge_body_is_refused_unread(tmp_path: Path, ultravox: respx.MockRouter) -> None:
    before = refusals("too_large")
    async with running_app(web_settings(tmp_path)) as client:
        response = await post_call(client, b'{"route": "' + b"x" * 9000 + b'"}')
    assert response.status_code == 413
    assert response.json() == {"detail": "body over 8192 bytes"}
    assert refusals("too_large") == before + 1
    assert not ultravox.calls


async def test_calls_past_the_client_burst_are_refused_with_retry_after(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    settings = web_settings(tmp_path, web_ip_burst=2, web_ip_calls_per_hour=60)
    before = refusals("rate_limited_client")
    async with running_app(settings) as client:
        answers = [await post_call(client, {"route": "sales"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json() == {"detail": "too many web calls from your address"}
    assert 55 <= int(answers[2].headers["retry-after"]) <= 60  # one call a minute
    assert refusals("rate_limited_client") == before + 1
    assert len(ultravox.calls) == 2


async def test_calls_past_the_global_burst_are_refused(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    settings = web_settings(
        tmp_path, web_global_burst=1, web_global_calls_per_hour=10, web_ip_burst=5
    )
    async with running_app(settings) as client:
        first = await post_call(client, {"route": "sales"})
        second = await post_call(client, {"route": "sales"})
    assert (first.status_code, second.status_code) == (201, 429)
    assert second.json() == {"detail": "too many web calls right now: try again later"}
    assert 355 <= int(second.headers["retry-after"]) <= 360
    assert len(ultravox.calls) == 1


async def test_calls_past_the_live_call_cap_are_refused_until_one_can_have_ended(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    settings = web_settings(tmp_path, web_max_concurrent_calls=1, web_max_duration="60s")
    before = refusals("at_capacity")
    async with running_app(settings) as client:
        first = await post_call(client, {"route": "sales"})
        second = await post_call(client, {"route": "sales"})
    assert (first.status_code, second.status_code) == (201, 429)
    assert second.json() == {"detail": "all web call lines are busy: try again later"}
    # The slot is held for the joinTimeout (30 s by default) plus the call's maxDuration.
    assert 85 <= int(second.headers["retry-after"]) <= 90
    assert refusals("at_capacity") == before + 1
    assert len(ultravox.calls) == 1


async def test_failed_ultravox_call_frees_its_slot(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post(f"/agents/{AGENT_ID}/calls")
    create.side_effect = [httpx.Response(400, json={"detail": "bad"}), created_call()]
    settings = web_settings(tmp_path, web_max_concurrent_calls=1)
    async with running_app(settings) as client:
        failed = await post_call(client, {"route": "sales"})
        created = await post_call(client, {"route": "sales"})
    assert failed.status_code == 502
    assert failed.json() == {"detail": "the agent could not be reached"}
    assert created.status_code == 201


async def test_ultravox_at_capacity_is_503_with_its_retry_after(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "7"}, json={})
    )
    async with running_app(web_settings(tmp_path, ultravox_deadline_seconds=0.5)) as client:
        response = await post_call(client, {"route": "sales"})
    assert response.status_code == 503
    assert response.json() == {"detail": "the agent is busy: try again shortly"}
    assert response.headers["retry-after"] == "7"


# --- signed tokens (WEB_CALL_SECRET) ------------------------------------------------------------


# Tokens are minted when each test runs (a factory), so a long test run cannot expire them.
@pytest.mark.parametrize(
    ("make_token", "detail"),
    [
        (lambda: None, "a web call token is required (the site's backend mints it)"),
        (lambda: "abc", "the web call token is malformed"),
        (
            lambda: mint_token("another-secret-that-is-long-enough-0000", "sales", 60),
            "the web call token's signature is not valid",
        ),
        (
            lambda: mint_token(SECRET, "sales", -1),
            "the web call token has expired: mint a new one",
        ),
        (
            lambda: mint_token(SECRET, "support", 60),
            "the web call token is for another route",
        ),
        (
            lambda: mint_token(SECRET, "sales", 3600),
            "the web call token lives longer than 600s (WEB_TOKEN_MAX_TTL_SECONDS): mint "
            "shorter-lived tokens",
        ),
    ],
    ids=["missing", "malformed", "forged", "expired", "other_route", "too_long_lived"],
)
async def test_call_without_a_valid_token_is_refused(
    tmp_path: Path,
    ultravox: respx.MockRouter,
    make_token: Callable[[], str | None],
    detail: str,
) -> None:
    before = refusals("forbidden_token")
    body: dict[str, Any] = {"route": "sales"}
    token = make_token()
    if token is not None:
        body["token"] = token
    async with running_app(web_settings(tmp_path, web_call_secret=SECRET)) as client:
        response = await post_call(client, body)
    assert response.status_code == 403
    assert response.json() == {"detail": detail}
    assert refusals("forbidden_token") == before + 1
    assert not ultravox.calls


async def test_token_starts_one_call_and_its_subject_reaches_metadata(
    tmp_path: Path, ultravox: respx.MockRouter
) -> None:
    create = ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    token = mint_token(SECRET, "sales", 120, subject="user-42")
    async with running_app(web_settings(tmp_path, web_call_secret=SECRET)) as client:
        first = await post_call(client, {"route": "sales", "token": token})
        replay = await post_call(client, {"route": "sales", "token": token})
    assert first.status_code == 201
    assert sent_body(create)["metadata"]["webSubject"] == "user-42"
    assert replay.status_code == 403
    assert replay.json() == {"detail": "the web call token was already used"}
    assert len(ultravox.calls) == 1


# --- the page and its files ---------------------------------------------------------------------


async def test_talk_page_has_a_strict_content_security_policy(tmp_path: Path) -> None:
    settings = web_settings(tmp_path, web_allowed_origins=SITE)
    async with running_app(settings) as client:
        response = await client.get("/talk/support")
    assert response.status_code == 200
    assert 'data-route="support"' in response.text
    assert 'data-context-fields="name page"' in response.text
    assert response.headers["content-security-policy"] == (
        f"default-src 'none'; script-src 'self' 'sha256-{IMPORT_MAP_HASH}'; style-src 'self'; "
        "connect-src 'self' wss: https:; media-src 'self' blob: mediastream:; "
        f"img-src 'self' data:; frame-ancestors 'self' {SITE}; base-uri 'none'; "
        "form-action 'none'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_talk_page_without_the_sdk_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.api.web.sdk_installed", lambda: False)
    async with running_app(web_settings(tmp_path)) as client:
        response = await client.get("/talk/support")
    assert response.status_code == 503
    assert "run `make web`" in response.text


@pytest.mark.parametrize(
    "path", ["talk.js", "vendor/ultravox-client/index.js", "vendor/livekit-client.esm.mjs"]
)
async def test_page_files_are_served(tmp_path: Path, path: str) -> None:
    async with running_app(web_settings(tmp_path)) as client:
        response = await client.get(f"/web/static/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "path", ["../page.py", "..%2Fpage.py", "vendor/ultravox-client/LICENSE", "nothing.js"]
)
async def test_nothing_else_is_served_as_a_page_file(tmp_path: Path, path: str) -> None:
    async with running_app(web_settings(tmp_path)) as client:
        response = await client.get(f"/web/static/{path}")
    assert response.status_code == 404
