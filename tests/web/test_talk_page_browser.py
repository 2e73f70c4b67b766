"""The /talk page in a real browser: Debian's headless Chromium, driven by Playwright, loads
the page under its Content-Security-Policy, starts a web call through the bridge, and joins it
with the real Ultravox client SDK at a stand-in Ultravox's joinUrl WebSocket.

Screenshots go to $BROWSER_SCREENSHOTS when set (look at them), else to the test's tmp dir."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from app.main import create_app
from app.web.page import sdk_installed
from tests.browser import ServerThread, launch_chromium, needs_chromium, screenshot_dir
from tests.redis_server import free_port
from tests.web.conftest import web_settings
from tests.web.servers import STANDIN_CALL_ID, HangUp, StandInUltravox

HANG_UP = {"type": "hang_up", "message": ""}

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sdk_installed(), "the page's SDK is missing: run `make web`"
    yield from launch_chromium(
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"
    )


class Talk:
    """The bridge and a stand-in Ultravox on loopback, and a browser page on /talk/<route>."""

    def __init__(self, page: Page, standin: StandInUltravox, bridge_url: str, shots: Path):
        self.page = page
        self.standin = standin
        self.bridge_url = bridge_url
        self.shots = shots
        self.console: list[str] = []
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(message.text)

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=self.shots / f"{name}.png", full_page=True)


@pytest.fixture
def talk(request: pytest.FixtureRequest, browser: Browser, tmp_path: Path) -> Iterator[Talk]:
    marker = request.node.get_closest_marker("standin")
    standin = StandInUltravox(**(marker.kwargs if marker else {}))
    standin_port = free_port()
    settings = web_settings(
        tmp_path,
        ultravox_api_url=f"http://127.0.0.1:{standin_port}/api",
        web_connect_sources=f"ws://127.0.0.1:{standin_port}",
        web_ip_burst=1,
    )
    shots = screenshot_dir(tmp_path)
    with (
        ServerThread(standin.app(f"ws://127.0.0.1:{standin_port}"), standin_port),
        ServerThread(create_app(settings)) as bridge,
    ):
        context = browser.new_context()
        page = context.new_page()
        yield Talk(page, standin, bridge.url, shots)
        context.close()


def test_visitor_starts_joins_and_ends_a_call(talk: Talk) -> None:
    page = talk.page
    page.goto(f"{talk.bridge_url}/talk/sales")
    status = page.locator("#status")
    button = page.locator("#call")
    expect(status).to_have_text("Ready")
    talk.screenshot("1-ready")

    button.click()
    assert talk.standin.connected.wait(10), "the page never opened the joinUrl WebSocket"
    expect(status).to_have_text("Connecting…")
    expect(button).to_have_text("End the call")
    expect(page.locator("#talk")).to_have_attribute("data-call-id", STANDIN_CALL_ID)
    talk.screenshot("2-connecting")
    [created] = talk.standin.created
    assert created["medium"] == {"webRtc": {}}
    assert created["metadata"]["provider"] == "web"
    [joined] = talk.standin.joined
    assert joined.path == f"/calls/{STANDIN_CALL_ID}/join"
    assert joined.query == {
        "token": "standin",
        "clientVersion": "web_0.5.0",
        "apiVersion": "1",
        "additionalMessages": "",
    }

    with page.expect_response(f"{talk.bridge_url}/web/calls/{STANDIN_CALL_ID}/end") as ending:
        button.click()
    assert talk.standin.closed.wait(10), "ending the call did not close the joinUrl WebSocket"
    assert joined.closed_by == "page"
    expect(status).to_have_text("Call ended")
    expect(button).to_have_text("Start the call")
    talk.screenshot("3-ended")
    # The page left the call and told the bridge, which freed the call's place once Ultravox
    # said the call cannot go on: the hang-up finds it over already (422, then its record says
    # so) unless it arrived before the page's leaving did. Never deleted: Ultravox keeps it.
    assert ending.value.status == 204
    [hang_up] = talk.standin.hang_ups
    assert (hang_up.call_id, hang_up.body) == (STANDIN_CALL_ID, HANG_UP)
    assert talk.standin.progress_reads == ([STANDIN_CALL_ID] if hang_up.status == 422 else [])
    assert talk.standin.deleted == []

    # The route allows one call per address in these tests: the page shows the refusal.
    button.click()
    expect(status).to_contain_text("too many web calls from your address (in ")
    talk.screenshot("4-refused")
    assert len(talk.standin.created) == 1
    csp_errors = [text for text in talk.console if "Content Security Policy" in text]
    assert csp_errors == []


@pytest.mark.standin(end_calls=True)
def test_page_shows_the_end_when_ultravox_hangs_up(talk: Talk) -> None:
    page = talk.page
    page.goto(f"{talk.bridge_url}/talk/sales")
    with page.expect_response(f"{talk.bridge_url}/web/calls/{STANDIN_CALL_ID}/end") as ending:
        page.locator("#call").click()
    assert talk.standin.closed.wait(10)
    assert talk.standin.joined[0].closed_by == "ultravox"
    expect(page.locator("#status")).to_have_text("Call ended")
    expect(page.locator("#call")).to_have_text("Start the call")
    # The place is freed now, not when the call's maxDuration could have run out: the bridge's
    # hang-up finds the call over, its record confirms it, and nothing is deleted.
    assert ending.value.status == 204
    assert talk.standin.hang_ups == [HangUp(STANDIN_CALL_ID, HANG_UP, 422)]
    assert talk.standin.progress_reads == [STANDIN_CALL_ID]
    assert talk.standin.deleted == []


def test_closing_the_tab_ends_the_call_at_the_bridge(talk: Talk) -> None:
    page = talk.page
    page.goto(f"{talk.bridge_url}/talk/sales")
    page.locator("#call").click()
    assert talk.standin.connected.wait(10)
    page.close(run_before_unload=True)
    assert talk.standin.hung_up.wait(10), "closing the tab did not end the call"
    [hang_up] = talk.standin.hang_ups
    assert (hang_up.call_id, hang_up.body) == (STANDIN_CALL_ID, HANG_UP)
    if hang_up.status == 422:  # the tab's socket closed first: the bridge reads the record
        assert talk.standin.progress_read.wait(10)
    assert talk.standin.deleted == []


def test_page_of_a_route_not_open_to_the_web_is_404(talk: Talk) -> None:
    response = talk.page.goto(f"{talk.bridge_url}/talk/phone-only")
    assert response is not None and response.status == 404
    assert talk.standin.created == []
