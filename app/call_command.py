"""`ultravox-bridge call`: places an outbound call through a running service's `POST /calls`.

It is a client of the service's API: it needs the API token and the service's URL, not the
service's own settings (no Ultravox key)."""

import argparse
import json
import sys
from typing import Any

import httpx
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.phone import written_e164
from app.providers import DIALERS
from app.settings import describe_validation_error

# Placing a call waits for Ultravox and then the provider, each within its own deadline.
REQUEST_TIMEOUT_SECONDS = 60.0


class CallCommandSettings(BaseSettings):
    """What the command reads from the environment or `.env` when no option gives it."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    bridge_api_token: SecretStr | None = None
    port: int = Field(default=8000, ge=1, le=65535)


def add_call_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    call = commands.add_parser(
        "call",
        help="place an outbound call through a running service",
        description="Asks a running ultravox-bridge to phone NUMBER; the agent of the route for "
        "the caller number (or --agent-id / --route) talks once the callee answers.",
    )
    *others, last = [dialer.name for dialer in DIALERS]
    providers = f"{', '.join(others)} or {last}"
    call.add_argument("--provider", required=True, metavar="P", help=providers)
    call.add_argument(
        "--to", required=True, metavar="NUMBER", help="the number to call, E.164 (+15005550006)"
    )
    call.add_argument(
        "--from",
        dest="from_",
        metavar="NUMBER",
        help="caller number (default: the provider's *_FROM_NUMBER)",
    )
    call.add_argument("--agent-id", help="the Ultravox agent to use instead of the route's")
    call.add_argument("--route", help="the route to use instead of the caller number's")
    call.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a templateContext value for the agent's prompt (repeatable)",
    )
    call.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a metadata value attached to the Ultravox call (repeatable)",
    )
    call.add_argument("--url", help="the service's URL (default http://127.0.0.1:PORT)")
    call.add_argument("--token", help="an API token of the service (default BRIDGE_API_TOKEN)")
    call.set_defaults(handler=run_call)


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, separator, text = value.partition("=")
        if not separator or not name:
            raise ValueError(f"{option} takes NAME=VALUE, not {value!r}")
        pairs[name] = text
    return pairs


def call_request(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /calls` body the options describe."""
    for option, number in (("--to", args.to), ("--from", args.from_)):
        if number is not None:
            try:
                written_e164(number)
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
    body: dict[str, Any] = {"provider": args.provider, "to": args.to}
    optional = {"from": args.from_, "agentId": args.agent_id, "route": args.route}
    body.update({name: value for name, value in optional.items() if value is not None})
    context = _pairs(args.context, "--context")
    metadata = _pairs(args.metadata, "--metadata")
    if context:
        body["templateContext"] = context
    if metadata:
        body["metadata"] = metadata
    return body


def run_call(args: argparse.Namespace) -> int:
    """Place the call; print the service's answer. Exit 0 when dialling, 1 when the call was
    not placed, 2 when the command itself is misused."""
    try:
        settings = CallCommandSettings()
        body = call_request(args)
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    token = args.token or (
        settings.bridge_api_token and settings.bridge_api_token.get_secret_value()
    )
    if not token:
        print("error: give --token or set BRIDGE_API_TOKEN", file=sys.stderr)
        return 2
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/") + "/calls"
    try:
        response = httpx.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the service at {url}: {exc}", file=sys.stderr)
        return 1
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    if response.status_code == 201:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"error: the service answered {response.status_code}", file=sys.stderr)
    print(json.dumps(answer, indent=2), file=sys.stderr)
    return 1
