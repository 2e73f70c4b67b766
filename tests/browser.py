"""A real browser for the tests: Debian's headless Chromium (`/usr/bin/chromium`) driven by
Playwright (never `playwright install`), and apps served by uvicorn on loopback for it.

Screenshots go to $BROWSER_SCREENSHOTS when it is set (to look at them), else to the test's
temporary directory."""

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, sync_playwright

from tests.redis_server import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed (.ci/run does it)"
)


def launch_chromium(*flags: str) -> Iterator[Browser]:
    """Chromium for a module's tests, with `flags` besides the usual ones: `yield from` it in a
    module-scoped fixture."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, *flags]
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


class ServerThread:
    """An ASGI app (with its lifespan) served by uvicorn on a loopback port, in its own thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, timeout_graceful_shutdown=5
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        for _ in range(400):
            if self._server.started:
                return self
            self._thread.join(0.05)
        raise RuntimeError(f"server on port {self.port} did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
