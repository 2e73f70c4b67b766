"""The calls console's pages: `/console` (the calls page), its sign-in and sign-out, and its
static files. What the page shows comes from the calls API, which accepts the console's
session cookie for its GET requests (`app/api/records.py`)."""

import hmac
import secrets
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import SettingsDep
from app.api.webhooks import PayloadTooLarge, read_body
from app.client_address import client_key
from app.console.access import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Console,
    cookie_name,
    same_origin,
    secure_cookies,
    session_of,
)
from app.console.page import (
    PAGE_HEADERS,
    STATIC_FILES,
    calls_page,
    disabled_page,
    refused_page,
    sign_in_page,
)
from app.settings import ServiceSettings

router = APIRouter(prefix="/console", tags=["console"])

# A sign-in or sign-out form is a token and a CSRF token: far below this.
MAX_FORM_BYTES = 4096
SIGN_IN_PATH = "/console/sign-in"


async def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def _page(body: str, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return HTMLResponse(body, status_code, headers={**PAGE_HEADERS, **(headers or {})})


def _redirect(path: str) -> Response:
    return RedirectResponse(path, 303, headers=PAGE_HEADERS)


def _disabled() -> Response:
    return _page(disabled_page(), 404)


def _set_cookie(
    response: Response,
    request: Request,
    settings: ServiceSettings,
    base: str,
    value: str,
    max_age: int | None = None,
) -> None:
    secure = secure_cookies(request, settings)
    response.set_cookie(
        cookie_name(base, secure),
        value,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
        max_age=max_age,
    )


def _delete_cookie(
    response: Response, request: Request, settings: ServiceSettings, base: str
) -> None:
    _set_cookie(response, request, settings, base, "", max_age=0)


class BadForm(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded fields of a small form; each field at most once."""
    try:
        body = await read_body(request, MAX_FORM_BYTES)
    except PayloadTooLarge:
        raise BadForm(413, "The form is too large.") from None
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadForm(400, "The form is not valid UTF-8.") from None
    if any(len(values) > 1 for values in fields.values()):
        raise BadForm(400, "A field of the form is repeated.")
    return {name: values[0] for name, values in fields.items()}


def _forged() -> Response:
    return _page(
        refused_page(
            "Refused",
            "This form was not sent by this service's own page (origin or CSRF token check "
            "failed). Open the sign-in page again and retry.",
        ),
        403,
    )


@router.get("", response_class=HTMLResponse)
async def calls(request: Request, settings: SettingsDep) -> Response:
    """The calls page for a signed-in browser; the sign-in form otherwise."""
    if not settings.bridge_api_tokens:
        return _disabled()
    session = session_of(request)
    if session is None:
        return _redirect(SIGN_IN_PATH)
    return _page(calls_page(session.csrf_token()))


def _sign_in_form(
    request: Request,
    settings: ServiceSettings,
    message: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The form, with its CSRF token also set as a cookie (the double-submit pattern: a page of
    another site can neither read the cookie nor set it, so it cannot fill the field)."""
    secure = secure_cookies(request, settings)
    current = request.cookies.get(cookie_name(SIGN_IN_COOKIE, secure), "")
    csrf = current if len(current) == 43 else secrets.token_urlsafe(32)
    response = _page(sign_in_page(csrf, message), status_code, headers)
    _set_cookie(response, request, settings, SIGN_IN_COOKIE, csrf)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, settings: SettingsDep) -> Response:
    if not settings.bridge_api_tokens:
        return _disabled()
    if session_of(request) is not None:
        return _redirect("/console")
    return _sign_in_form(request, settings)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request, settings: SettingsDep, console: ConsoleDep) -> Response:
    """Checks the origin and CSRF token, then the client's failed attempts, then the token;
    a right token gets a session cookie and the calls page."""
    if not settings.bridge_api_tokens:
        return _disabled()
    if not same_origin(request, settings):
        return _forged()
    try:
        form = await _form(request)
    except BadForm as exc:
        return _sign_in_form(request, settings, str(exc), exc.status_code)
    secure = secure_cookies(request, settings)
    expected = request.cookies.get(cookie_name(SIGN_IN_COOKIE, secure), "")
    presented = form.get("csrf", "")
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        return _forged()
    client = client_key(request.client.host if request.client else None)
    wait = console.attempts.retry_after(client)
    if wait:
        minutes = -(-wait // 60)
        return _sign_in_form(
            request,
            settings,
            f"Too many failed sign-ins from your address: try again in {minutes} min.",
            429,
            {"Retry-After": str(wait)},
        )
    key = console.sessions.key_of(form.get("token", "").strip().encode())
    if key is None:
        console.attempts.failed(client)
        return _sign_in_form(request, settings, "That is not one of the API tokens.", 401)
    response = _redirect("/console")
    lifetime = int(console.sessions.lifetime_seconds)
    _set_cookie(
        response, request, settings, SESSION_COOKIE, console.sessions.issue(key), max_age=lifetime
    )
    _delete_cookie(response, request, settings, SIGN_IN_COOKIE)
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, settings: SettingsDep) -> Response:
    """Deletes the session cookie; a signed-in browser's form must carry its CSRF token."""
    if not settings.bridge_api_tokens:
        return _disabled()
    if not same_origin(request, settings):
        return _forged()
    try:
        form = await _form(request)
    except BadForm as exc:
        return _page(refused_page("Refused", str(exc)), exc.status_code)
    session = session_of(request)
    if session is not None and not session.csrf_matches(form.get("csrf", "")):
        return _forged()
    response = _redirect(SIGN_IN_PATH)
    _delete_cookie(response, request, settings, SESSION_COOKIE)
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """console.js and console.css; nothing else is served from here."""
    found = STATIC_FILES.get(name)
    if found is None:
        return Response("not found", 404, media_type="text/plain")
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(found.body, media_type=found.media_type, headers=headers)
