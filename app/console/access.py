"""Who may use the console: the session cookie of a request, the cookies' names and flags, and
the Origin check of the console's forms."""

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request

from app.console.attempts import SignInAttempts
from app.console.sessions import Session, Sessions
from app.settings import ServiceSettings

SESSION_COOKIE = "bridge_console"
SIGN_IN_COOKIE = "bridge_console_sign_in"


@dataclass
class Console:
    """The console's state in one process: its sessions and the failed sign-ins by address."""

    sessions: Sessions
    attempts: SignInAttempts = field(default_factory=SignInAttempts)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> "Console":
        tokens = [token.get_secret_value().encode() for token in settings.bridge_api_tokens]
        return cls(Sessions(tokens, settings.console_session_hours * 3600))


def secure_cookies(request: Request, settings: ServiceSettings) -> bool:
    """Whether the browser talks https: this request came over it (directly or through a
    proxy's X-Forwarded-Proto), or PUBLIC_BASE_URL says the public origin is https."""
    public = settings.public_base_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def cookie_name(base: str, secure: bool) -> str:
    """`__Host-` cookies must be Secure, for the whole host and no other: a sibling subdomain
    cannot plant or overwrite them. Over plain http (local use) the plain name is all there is."""
    return f"__Host-{base}" if secure else base


def session_of(request: Request) -> Session | None:
    """The request's valid console session, if it has one."""
    settings: ServiceSettings = request.app.state.settings
    console: Console = request.app.state.console
    name = cookie_name(SESSION_COOKIE, secure_cookies(request, settings))
    return console.sessions.check(request.cookies.get(name))


def same_origin(request: Request, settings: ServiceSettings) -> bool:
    """Whether a state-changing request comes from this service's own page: its Origin is the
    origin the request was sent to (scheme and Host), or PUBLIC_BASE_URL's. A request without
    an Origin (or with `null`) is refused: every browser sends one with a form's POST."""
    origin = (request.headers.get("origin") or "").lower()
    if not origin or origin == "null":
        return False
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if settings.public_base_url:
        public = urlsplit(settings.public_base_url)
        allowed.add(f"{public.scheme}://{public.netloc}".lower())
    return origin in allowed
