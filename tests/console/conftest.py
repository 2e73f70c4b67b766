"""Helpers of the console's HTTP tests: the sign-in form fetched and posted as a browser does."""

import re
from dataclasses import dataclass

import httpx

from tests.conftest import BASE_URL
from tests.records.conftest import API_TOKEN

FORM = {"content-type": "application/x-www-form-urlencoded"}


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each cookie the response sets, by name: its whole Set-Cookie line."""
    lines = response.headers.get_list("set-cookie")
    return {line.split("=", 1)[0]: line for line in lines}


def cookie_value(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1].strip('"')


def form_csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


@dataclass
class SignInForm:
    csrf: str
    cookie: str  # the sign-in cookie's value (double-submit)


async def open_form(client: httpx.AsyncClient) -> SignInForm:
    response = await client.get("/console/sign-in")
    assert response.status_code == 200
    cookie = cookie_value(set_cookies(response)["bridge_console_sign_in"])
    client.cookies.clear()
    return SignInForm(form_csrf(response.text), cookie)


async def post_sign_in(
    client: httpx.AsyncClient,
    form: SignInForm,
    token: str = API_TOKEN,
    origin: str | None = BASE_URL,
    csrf: str | None = None,
) -> httpx.Response:
    headers = FORM | {"cookie": f"bridge_console_sign_in={form.cookie}"}
    if origin is not None:
        headers["origin"] = origin
    body = httpx.QueryParams({"csrf": form.csrf if csrf is None else csrf, "token": token})
    return await client.post("/console/sign-in", content=str(body), headers=headers)


async def signed_in(client: httpx.AsyncClient, token: str = API_TOKEN) -> str:
    """A session cookie value, from signing in."""
    response = await post_sign_in(client, await open_form(client), token)
    assert response.status_code == 303, response.text
    client.cookies.clear()
    return cookie_value(set_cookies(response)["bridge_console"])
