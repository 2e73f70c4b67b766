"""The calls console in a real browser (Debian's headless Chromium, driven by Playwright): sign
in, see a call that a signed Twilio webhook created appear live, open its timeline and
transcript, see its end arrive from Ultravox's signed `call.ended` without a reload, sign out.

The bridge runs in uvicorn on loopback, and so does a stand-in Ultravox (respx cannot answer a
server in another thread's event loop as simply). Callers' words and Ultravox's summary carry
HTML and script: the page must show them as text and run nothing."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from app.main import create_app
from tests.browser import ServerThread, launch_chromium, needs_chromium, screenshot_dir
from tests.conftest import BASE_URL, twilio_fields, twilio_webhook
from tests.records.conftest import API_TOKEN, records_settings, ultravox_event, uv_call

pytestmark = needs_chromium

CALL_SID = "CA0000000000000000000000000000b001"
UV_ID = "7c4e0000-0000-4000-8000-0000000b0001"
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def standin_ultravox() -> FastAPI:
    """Ultravox's REST API as far as this page needs it: creating a call and its messages."""
    app = FastAPI()

    @app.post("/api/calls")
    async def create() -> JSONResponse:
        join_url = f"wss://voice.ultravox.invalid/calls/{UV_ID}/join?token=standin"
        return JSONResponse({"callId": UV_ID, "joinUrl": join_url}, 201)

    @app.get("/api/calls/{call_id}/messages")
    async def messages(call_id: str) -> dict[str, Any]:
        return {
            "results": [
                {"role": "MESSAGE_ROLE_AGENT", "text": "Hello, how can I help?", "medium": "voice"},
                {"role": "MESSAGE_ROLE_USER", "text": f"Say {HOSTILE}", "medium": "voice"},
            ],
            "next": None,
        }

    return app


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


class Console:
    """The bridge and the stand-in Ultravox on loopback, and one browser page."""

    def __init__(self, page: Page, bridge_url: str, shots: Path) -> None:
        self.page = page
        self.url = bridge_url
        self.shots = shots
        self.problems: list[str] = []
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(message.text)

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=self.shots / f"console-{name}.png", full_page=True)

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url + path, content=content, headers=headers, timeout=10)


@pytest.fixture
def console(browser: Browser, tmp_path: Path) -> Iterator[Console]:
    standin = ServerThread(standin_ultravox())
    settings = records_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}",
        ultravox_api_url=f"{standin.url}/api",
    )
    with standin, ServerThread(create_app(settings)) as bridge:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            yield Console(context.new_page(), bridge.url, screenshot_dir(tmp_path))
        finally:
            context.close()


def test_signed_in_console_shows_a_call_live_and_its_end_without_a_reload(
    console: Console,
) -> None:
    page = console.page
    page.goto(f"{console.url}/console")
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    console.screenshot("1-sign-in")
    page.fill("#token", API_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{console.url}/console")
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#live-empty")).to_be_visible()
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    console.screenshot("2-empty")

    # A call arrives: Twilio's signed webhook (signed for PUBLIC_BASE_URL, as Twilio would).
    webhook = twilio_webhook(twilio_fields(CALL_SID))
    path = webhook.url.removeprefix(BASE_URL)
    headers = webhook.headers | {"content-type": "application/x-www-form-urlencoded"}
    answer = console.post(path, webhook.content, headers)
    assert answer.status_code == 200 and "<Stream" in answer.text

    live_row = page.locator("#live-rows tr")
    expect(live_row).to_have_count(1)
    expect(page.locator("#live-count")).to_have_text("1")
    expect(live_row.locator("td").nth(2)).to_have_text("twilio")
    expect(live_row.locator("td").nth(4)).to_have_text("+15*******06")
    recent_row = page.locator("#recent-rows tr")
    expect(recent_row).to_have_count(1)
    expect(recent_row.locator(".outcome-answered")).to_have_text("answered")
    expect(recent_row.locator(".state-live")).to_have_text("live")

    # Its detail: the record, the timeline, and the transcript, with the caller's words as text.
    recent_row.locator("a").click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(page.locator("#timeline li")).to_have_count(1)
    expect(page.locator("#timeline li .kind")).to_have_text("webhook.answered")
    expect(page.locator("#transcript li")).to_have_count(2)
    expect(page.locator("#transcript li").nth(1).locator("p")).to_have_text(f"Say {HOSTILE}")
    expect(page.locator("#detail-fields")).to_contain_text(UV_ID)
    console.screenshot("3-live-detail")

    # Its end arrives from Ultravox: the lists and the open detail change, the page stays.
    joined = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    call = uv_call(
        UV_ID,
        "twilio",
        CALL_SID,
        joined=iso(joined),
        ended=iso(joined + timedelta(seconds=63)),
        endReason="hangup",
        shortSummary=f"Caller typed {HOSTILE}",
    )
    body, event_headers = ultravox_event("call.ended", call)
    assert console.post("/ultravox/events", body, event_headers).status_code == 204

    expect(live_row).to_have_count(0)
    expect(page.locator("#live-empty")).to_be_visible()
    expect(recent_row.locator(".state-ended")).to_have_text("ended")
    expect(recent_row.locator(".summary")).to_have_text(f"Caller typed {HOSTILE}")
    expect(recent_row.locator("td").nth(7)).to_have_text("1m 03s")
    expect(recent_row.locator("td").nth(8)).to_have_text("hangup")
    expect(page.locator("#timeline li .kind")).to_have_text(["webhook.answered", "call.ended"])
    expect(page.locator("#detail-fields")).to_contain_text("ultravox")
    console.screenshot("4-ended")
    assert page.evaluate("window.loadedOnce") is True
    assert page.evaluate("window.pwned") is None
    assert page.locator("#console img, #console script").count() == 0

    # The filters: chosen in the form, kept in the address, applied by the API.
    page.select_option("select[name=provider]", "plivo")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(
        f"{console.url}/console?since=&until=&route=&provider=plivo&outcome=&direction="
    )
    expect(page.locator("#recent-empty")).to_be_visible()
    expect(page.locator("#recent-rows tr")).to_have_count(0)
    page.goto(f"{console.url}/console?provider=twilio&outcome=answered")
    expect(page.locator("select[name=outcome]")).to_have_value("answered")
    expect(page.locator("#recent-rows tr")).to_have_count(1)

    # Sign out: back to the form, and neither the page nor the API opens without signing in.
    page.click("text=Sign out")
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    console.screenshot("5-signed-out")
    page.goto(f"{console.url}/console")
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    status = page.evaluate("fetch('/api/calls').then((r) => r.status)")
    assert status == 401
    assert [text for text in console.problems if "Content Security Policy" in text] == []


def test_wrong_token_shows_the_form_again_with_a_message(console: Console) -> None:
    page = console.page
    page.goto(f"{console.url}/console/sign-in")
    page.fill("#token", "not-the-token-0123456789")
    page.click("button[type=submit]")
    expect(page.locator(".alert")).to_have_text("That is not one of the API tokens.")
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    console.screenshot("6-wrong-token")
    page.fill("#token", API_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{console.url}/console")


def test_without_tokens_the_page_says_how_to_turn_it_on(browser: Browser, tmp_path: Path) -> None:
    settings = records_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}", bridge_api_tokens=""
    )
    with ServerThread(create_app(settings)) as bridge:
        context = browser.new_context(viewport={"width": 1000, "height": 600})
        try:
            page = context.new_page()
            response = page.goto(f"{bridge.url}/console")
            assert response is not None and response.status == 404
            expect(page.locator("h1")).to_have_text("The calls console is off")
            expect(page.locator("main")).to_contain_text("set BRIDGE_API_TOKENS")
            page.screenshot(path=screenshot_dir(tmp_path) / "console-7-off.png")
        finally:
            context.close()
