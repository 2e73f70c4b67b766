"""The `/talk/<route>` page: one button that starts a web call of the route and joins it with
the Ultravox client SDK, the call's status, and the live transcript.

The SDK is not in the repository: `make web` (run by `make run` and `make test`) installs it
from the npm registry at the versions `web/package-lock.json` pins, and copies its browser
files into `app/web/static/vendor/`; the Dockerfile does the same in a build stage."""

import base64
import hashlib
import html
import json
from dataclasses import dataclass
from pathlib import Path

from app.settings import ServiceSettings

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
STATIC_PREFIX = "/web/static/"
# The SDK imports "livekit-client" by name; the import map tells the browser where it is.
IMPORT_MAP = json.dumps(
    {"imports": {"livekit-client": f"{STATIC_PREFIX}vendor/livekit-client.esm.mjs"}},
    separators=(",", ":"),
)
IMPORT_MAP_HASH = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()
SDK_FILES = ("ultravox-client/index.js", "ultravox-client/version.js", "livekit-client.esm.mjs")


def sdk_installed() -> bool:
    return all((VENDOR_DIR / name).is_file() for name in SDK_FILES)


def static_files() -> dict[str, Path]:
    """Every file the pages may load, by its path under /web/static/: nothing else is served."""
    return {
        path.relative_to(STATIC_DIR).as_posix(): path
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and path.suffix in (".js", ".mjs", ".css")
    }


def content_security_policy(settings: ServiceSettings) -> str:
    """Only this service's own scripts and styles (and the one import map, by its hash); network
    connections to this service and to WEB_CONNECT_SOURCES (Ultravox's call sockets); embedding
    only by this service and WEB_ALLOWED_ORIGINS."""
    ancestors = " ".join(["'self'", *settings.web_allowed_origins])
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'sha256-{IMPORT_MAP_HASH}'",
            "style-src 'self'",
            f"connect-src 'self' {settings.web_connect_sources}",
            "media-src 'self' blob: mediastream:",
            "img-src 'self' data:",
            f"frame-ancestors {ancestors}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


@dataclass(frozen=True)
class TalkPage:
    route: str
    context_fields: tuple[str, ...]

    def render(self) -> str:
        route = html.escape(self.route)
        fields = html.escape(" ".join(self.context_fields))
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Talk to us</title>
<link rel="stylesheet" href="{STATIC_PREFIX}talk.css">
<script type="importmap">{IMPORT_MAP}</script>
<script type="module" src="{STATIC_PREFIX}talk.js"></script>
</head>
<body>
<main id="talk" data-route="{route}" data-context-fields="{fields}" data-status="ready">
<h1>Talk to us</h1>
<p class="hint">Uses your microphone. The call ends by itself after a few minutes.</p>
<button id="call" type="button" disabled>Start the call</button>
<p id="status" role="status" aria-live="polite">Loading…</p>
<ol id="transcript" aria-live="polite"></ol>
</main>
</body>
</html>
"""
