"""The console's HTML: the sign-in form, the calls page (a shell that console.js fills from the
calls API), the page shown while the console is off; its static files and security headers.

Nothing a caller or provider can influence is rendered here: call data only ever reaches the
page through console.js, which writes it as text (`textContent`), never as HTML."""

import hashlib
import html
from dataclasses import dataclass
from pathlib import Path

from app.records.changes import OUTCOMES
from app.web.calls import RECORDED_PROVIDERS

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/console/static/"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: under it Chromium sends `Origin: null` with a form's POST, which the
    # CSRF check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str  # a hash of the body: the URL changes when the file does, so it can be cached


def _static(name: str, media_type: str) -> StaticFile:
    body = (STATIC_DIR / name).read_bytes()
    return StaticFile(body, media_type, hashlib.sha256(body).hexdigest()[:12])


STATIC_FILES = {
    "console.js": _static("console.js", "text/javascript; charset=utf-8"),
    "console.css": _static("console.css", "text/css; charset=utf-8"),
}


def _asset(name: str) -> str:
    return f"{STATIC_PREFIX}{name}?v={STATIC_FILES[name].version}"


def _document(title: str, body: str, script: bool = False) -> str:
    script_tag = f'<script src="{_asset("console.js")}" defer></script>\n' if script else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · ultravox-bridge</title>
<link rel="stylesheet" href="{_asset("console.css")}">
{script_tag}</head>
<body>
{body}
</body>
</html>
"""


def sign_in_page(csrf_token: str, message: str | None = None) -> str:
    alert = f'<p class="alert" role="alert">{html.escape(message)}</p>\n' if message else ""
    return _document(
        "Sign in",
        f"""<main class="card">
<h1>Calls console</h1>
<p class="hint">Sign in with one of the service's API tokens (<code>BRIDGE_API_TOKENS</code>).</p>
{alert}<form method="post" action="/console/sign-in">
<input type="hidden" name="csrf" value="{html.escape(csrf_token)}">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required
 maxlength="512" autofocus>
<button type="submit">Sign in</button>
</form>
</main>""",
    )


def disabled_page() -> str:
    return _document(
        "Console off",
        """<main class="card">
<h1>The calls console is off</h1>
<p>It opens with the service's API tokens, and none is configured. To turn it on, set
<code>BRIDGE_API_TOKENS</code> to one or more secret tokens (comma-separated, 16 characters or
more each), for example from
<code>python -c 'import secrets; print(secrets.token_urlsafe(32))'</code>,
and restart the service. Then sign in here with one of them.</p>
<p class="hint">The same tokens open the calls API (<code>/api/calls</code>) and outbound
calling (<code>POST /calls</code>).</p>
</main>""",
    )


def refused_page(title: str, message: str) -> str:
    return _document(
        title,
        f"""<main class="card">
<h1>{html.escape(title)}</h1>
<p>{html.escape(message)}</p>
<p><a href="/console/sign-in">Back to sign-in</a></p>
</main>""",
    )


def _options(values: list[str]) -> str:
    options = ['<option value="">any</option>']
    options += [f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values]
    return "".join(options)


def calls_page(csrf_token: str) -> str:
    providers = sorted(RECORDED_PROVIDERS)
    return _document(
        "Calls",
        f"""<header class="bar">
<h1>Calls</h1>
<p id="connection" data-state="connecting" role="status">Connecting…</p>
<form method="post" action="/console/sign-out">
<input type="hidden" name="csrf" value="{html.escape(csrf_token)}">
<button type="submit" class="quiet">Sign out</button>
</form>
</header>
<main id="console">
<div class="lists">
<section id="live" aria-labelledby="live-title">
<h2 id="live-title">Live calls <span id="live-count" class="count">0</span></h2>
<table>
<thead><tr><th>Received</th><th>For</th><th>Provider</th><th>Route</th><th>Caller</th>
<th>Called</th><th>Direction</th></tr></thead>
<tbody id="live-rows"></tbody>
</table>
<p id="live-empty" class="empty">No live calls.</p>
</section>
<section id="recent" aria-labelledby="recent-title">
<h2 id="recent-title">Recent calls</h2>
<form id="filters" method="get" action="/console">
<label>Since <input name="since" type="datetime-local" step="1"></label>
<label>Until <input name="until" type="datetime-local" step="1"></label>
<label>Route <input name="route" maxlength="128" size="10"></label>
<label>Provider <select name="provider">{_options(providers)}</select></label>
<label>Outcome <select name="outcome">{_options(list(OUTCOMES))}</select></label>
<label>Direction <select name="direction">{_options(["inbound", "outbound"])}</select></label>
<button type="submit">Filter</button>
<a href="/console" class="reset">Clear</a>
</form>
<p id="recent-error" class="alert" role="alert" hidden></p>
<table>
<thead><tr><th>Received</th><th>Provider</th><th>Route</th><th>Caller</th><th>Called</th>
<th>Outcome</th><th>State</th><th>Duration</th><th>End reason</th><th>Summary</th></tr></thead>
<tbody id="recent-rows"></tbody>
</table>
<p id="recent-empty" class="empty" hidden>No calls match.</p>
<button id="more" type="button" class="quiet" hidden>Load more</button>
</section>
</div>
<aside id="detail" aria-labelledby="detail-title" hidden>
<div class="detail-head">
<h2 id="detail-title">Call</h2>
<a href="#" id="detail-close" class="quiet">Close</a>
</div>
<p id="detail-error" class="alert" role="alert" hidden></p>
<dl id="detail-fields"></dl>
<h3>Timeline</h3>
<ol id="timeline"></ol>
<h3>Transcript</h3>
<p id="transcript-note" class="empty"></p>
<ol id="transcript"></ol>
</aside>
</main>""",
        script=True,
    )
