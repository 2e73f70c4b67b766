"""The console over HTTP: who gets the page, the sign-in form's checks (origin, CSRF token,
failed attempts per address), the session cookie's flags, forged and expired cookies, sign-out,
and the page shown while no token is configured."""

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.console.sessions import Sessions
from app.main import create_app
from app.providers import PROVIDER_NAMES
from tests.conftest import BASE_URL, running_app
from tests.console.conftest import (
    FORM,
    cookie_value,
    form_csrf,
    open_form,
    post_sign_in,
    set_cookies,
    signed_in,
)
from tests.records.conftest import API_TOKEN, records_settings

OTHER_TOKEN = "a-second-api-token-0123456789"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(records_settings()) as c:
        yield c


def session(value: str) -> dict[str, str]:
    return {"cookie": f"bridge_console={value}"}


async def test_without_a_session_the_page_sends_to_the_sign_in_form(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/console")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in"
    form = await client.get("/console/sign-in")
    assert form.status_code == 200
    assert form.headers["content-security-policy"] == CSP
    assert form.headers["x-frame-options"] == "DENY"
    assert form.headers["cache-control"] == "no-store"
    assert '<form method="post" action="/console/sign-in">' in form.text
    assert "<script" not in form.text  # the form needs no script at all


async def test_sign_in_sets_a_strict_http_only_session_cookie_that_opens_page_and_api(
    client: httpx.AsyncClient,
) -> None:
    response = await post_sign_in(client, await open_form(client))
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookies = set_cookies(response)
    line = cookies["bridge_console"]
    assert "HttpOnly" in line and "SameSite=strict" in line and "Path=/" in line
    assert "Max-Age=28800" in line  # CONSOLE_SESSION_HOURS=8
    assert "Secure" not in line  # plain http, PUBLIC_BASE_URL http: the README says so
    assert "Max-Age=0" in cookies["bridge_console_sign_in"]  # the form's cookie is spent
    client.cookies.clear()
    value = cookie_value(line)

    page = await client.get("/console", headers=session(value))
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    scripts = [part.split(">", 1)[0] for part in page.text.split("<script")[1:]]
    assert len(scripts) == 1 and scripts[0].startswith(' src="/console/static/console.js?v=')
    calls = await client.get("/api/calls", headers=session(value))
    assert calls.status_code == 200 and calls.json() == {"calls": [], "nextCursor": None}
    assert (await client.get("/api/calls/changes", headers=session(value))).status_code == 200


async def test_the_provider_filter_offers_every_provider_and_web_calls(
    client: httpx.AsyncClient,
) -> None:
    value = cookie_value(
        set_cookies(await post_sign_in(client, await open_form(client)))["bridge_console"]
    )
    client.cookies.clear()
    page = (await client.get("/console", headers=session(value))).text
    select = page.split('<select name="provider">', 1)[1].split("</select>", 1)[0]
    offered = [part.split('"', 1)[0] for part in select.split('<option value="')[1:]]
    assert offered == ["", *sorted({*PROVIDER_NAMES, "web"})]


async def test_session_cookie_does_not_open_outbound_calling(client: httpx.AsyncClient) -> None:
    value = await signed_in(client)
    body = {"to": "+15005550009", "provider": "twilio"}
    response = await client.post("/calls", json=body, headers=session(value) | {"origin": BASE_URL})
    assert response.status_code == 401


async def test_wrong_token_is_401_and_ten_of_them_lock_the_address_out(
    client: httpx.AsyncClient,
) -> None:
    form = await open_form(client)
    for _ in range(10):
        wrong = await post_sign_in(client, form, "not-the-token-0123456789")
        assert wrong.status_code == 401
        assert "That is not one of the API tokens." in wrong.text
        assert "bridge_console" not in set_cookies(wrong)
    locked = await post_sign_in(client, form)  # even the right token, now
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "60"
    assert "Too many failed sign-ins from your address: try again in 1 min." in locked.text
    assert "bridge_console" not in set_cookies(locked)

    other = httpx.ASGITransport(app=client.app, client=("198.51.100.9", 40000))  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=other, base_url=BASE_URL) as elsewhere:
        assert (await post_sign_in(elsewhere, await open_form(elsewhere))).status_code == 303


@pytest.mark.parametrize(
    ("origin", "csrf"),
    [
        (None, None),
        ("null", None),
        ("https://evil.example", None),
        ("http://bridge.test.evil.example", None),
        (BASE_URL, ""),
        (BASE_URL, "forged-csrf-token-0000000000000000000000000"),
    ],
    ids=["no_origin", "null_origin", "other_site", "lookalike", "no_csrf", "wrong_csrf"],
)
async def test_sign_in_without_its_origin_and_csrf_token_is_refused_and_not_counted(
    client: httpx.AsyncClient, origin: str | None, csrf: str | None
) -> None:
    form = await open_form(client)
    for _ in range(12):
        response = await post_sign_in(client, form, origin=origin, csrf=csrf)
        assert response.status_code == 403
        assert "origin or CSRF token check failed" in response.text
        assert "bridge_console" not in set_cookies(response)
    # Refusals before the token is looked at cost the address nothing.
    assert (await post_sign_in(client, form, "wrong-token-0123456789")).status_code == 401


async def test_sign_in_form_without_its_cookie_is_refused(client: httpx.AsyncClient) -> None:
    form = await open_form(client)
    body = str(httpx.QueryParams({"csrf": form.csrf, "token": API_TOKEN}))
    response = await client.post(
        "/console/sign-in", content=body, headers=FORM | {"origin": BASE_URL}
    )
    assert response.status_code == 403


async def test_huge_or_repeated_form_is_refused(client: httpx.AsyncClient) -> None:
    form = await open_form(client)
    headers = FORM | {"origin": BASE_URL, "cookie": f"bridge_console_sign_in={form.cookie}"}
    huge = await client.post("/console/sign-in", content=b"token=" + b"a" * 5000, headers=headers)
    assert huge.status_code == 413
    repeated = f"csrf={form.csrf}&token={API_TOKEN}&token=other-token-0123456789"
    twice = await client.post("/console/sign-in", content=repeated, headers=headers)
    assert twice.status_code == 400
    assert "bridge_console" not in set_cookies(twice)


def issued(token: str, at: float) -> str:
    """A session cookie signed with `token` as if issued at the time `at`."""
    sessions = Sessions([token.encode()], 8 * 3600, lambda: at)
    key = sessions.key_of(token.encode())
    assert key is not None
    return sessions.issue(key)


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "s1.x.1.y.z",
        "not-a-session",
        issued(OTHER_TOKEN, time.time()),
        issued(API_TOKEN, time.time() - 8 * 3600 - 5),
        issued(API_TOKEN, time.time() + 600),
    ],
    ids=["empty", "bad_signature", "garbage", "unknown_token", "expired", "from_the_future"],
)
async def test_forged_or_expired_session_opens_nothing(
    client: httpx.AsyncClient, forged: str
) -> None:
    page = await client.get("/console", headers=session(forged))
    assert page.status_code == 303 and page.headers["location"] == "/console/sign-in"
    assert (await client.get("/api/calls", headers=session(forged))).status_code == 401


async def test_tampered_session_opens_nothing(client: httpx.AsyncClient) -> None:
    value = await signed_in(client)
    version, key_id, issued, nonce, signature = value.split(".")
    later = f"{version}.{key_id}.{int(issued) + 3600}.{nonce}.{signature}"
    assert (await client.get("/console", headers=session(later))).status_code == 303
    assert (await client.get("/console", headers=session(value))).status_code == 200


async def test_a_session_ends_when_its_token_is_removed_and_survives_a_restart() -> None:
    both = records_settings(bridge_api_tokens=f"{API_TOKEN},{OTHER_TOKEN}")
    async with running_app(both) as first:
        value = await signed_in(first, OTHER_TOKEN)
    async with running_app(both) as restarted:  # a restart, or another replica
        assert (await restarted.get("/console", headers=session(value))).status_code == 200
    async with running_app(records_settings()) as rotated:  # OTHER_TOKEN removed
        assert (await rotated.get("/console", headers=session(value))).status_code == 303


async def test_sign_out_needs_origin_and_csrf_then_deletes_the_cookie(
    client: httpx.AsyncClient,
) -> None:
    value = await signed_in(client)
    csrf = form_csrf((await client.get("/console", headers=session(value))).text)
    client.cookies.clear()
    for origin, token in [(None, csrf), ("https://evil.example", csrf), (BASE_URL, "x" * 43)]:
        headers = FORM | session(value) | ({"origin": origin} if origin else {})
        refused = await client.post("/console/sign-out", content=f"csrf={token}", headers=headers)
        assert refused.status_code == 403
        assert "bridge_console" not in set_cookies(refused)
    headers = FORM | session(value) | {"origin": BASE_URL}
    done = await client.post("/console/sign-out", content=f"csrf={csrf}", headers=headers)
    assert done.status_code == 303 and done.headers["location"] == "/console/sign-in"
    assert "Max-Age=0" in set_cookies(done)["bridge_console"]


async def test_over_https_the_cookies_are_secure_host_cookies() -> None:
    settings = records_settings(public_base_url="https://bridge.test")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://bridge.test") as c:
            form = await c.get("/console/sign-in")
            line = set_cookies(form)["__Host-bridge_console_sign_in"]
            assert "Secure" in line and "Path=/" in line and "Domain" not in line
            body = str(httpx.QueryParams({"csrf": form_csrf(form.text), "token": API_TOKEN}))
            cookie = f"__Host-bridge_console_sign_in={cookie_value(line)}"
            headers = FORM | {"origin": "https://bridge.test", "cookie": cookie}
            c.cookies.clear()
            signed = await c.post("/console/sign-in", content=body, headers=headers)
            assert signed.status_code == 303
            line = set_cookies(signed)["__Host-bridge_console"]
            assert "Secure" in line and "HttpOnly" in line and "SameSite=strict" in line
            value = cookie_value(line)
            c.cookies.clear()
            page = await c.get("/console", headers={"cookie": f"__Host-bridge_console={value}"})
            assert page.status_code == 200
            plain = await c.get("/console", headers={"cookie": f"bridge_console={value}"})
            assert plain.status_code == 303  # only the __Host- cookie counts over https


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/console"),
        ("GET", "/console/sign-in"),
        ("POST", "/console/sign-in"),
        ("POST", "/console/sign-out"),
    ],
)
async def test_without_tokens_the_console_says_how_to_turn_it_on(method: str, path: str) -> None:
    async with running_app(records_settings(bridge_api_tokens="")) as client:
        response = await client.request(method, path, headers={"origin": BASE_URL})
    assert response.status_code == 404
    assert "The calls console is off" in response.text
    assert "set\n<code>BRIDGE_API_TOKENS</code>" in response.text
    assert response.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/console/static/console.js", 200, "text/javascript; charset=utf-8"),
        ("/console/static/console.css", 200, "text/css; charset=utf-8"),
        ("/console/static/page.py", 404, "text/plain; charset=utf-8"),
        ("/console/static/..%2Fpage.py", 404, "application/json"),  # no route matches
    ],
)
async def test_only_the_pages_own_files_are_served(
    client: httpx.AsyncClient, path: str, status: int, kind: str
) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == kind


def test_settings_refuse_a_session_lifetime_out_of_range() -> None:
    with pytest.raises(ValueError, match="console_session_hours"):
        Settings(_env_file=None, ultravox_api_key="k" * 20, console_session_hours=0)  # type: ignore[call-arg]
