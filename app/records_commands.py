"""The records' commands: `ultravox-bridge db upgrade` (migrate DATABASE_URL, for those who do
it apart from start-up) and `ultravox-bridge ultravox-webhook register` (point Ultravox's
account webhook at this service and print the secret to set)."""

import argparse
import asyncio
import secrets
import sys
from typing import Any

import httpx

from app.config import load_settings
from app.http_transport import CappedTransport
from app.records.sources import ULTRAVOX_EVENTS
from app.settings import ConfigError, ServiceSettings
from app.ultravox import UltravoxClient, UltravoxError

# Listing pages to look through for an existing webhook.
MAX_PAGES = 20


def _settings() -> ServiceSettings | None:
    try:
        return load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _db_upgrade(args: argparse.Namespace) -> int:
    from app.records.database import upgrade_url

    settings = _settings()
    if settings is None:
        return 2
    url = settings.database_url.get_secret_value()
    upgrade_url(url)
    print(f"database {url.split('://', 1)[0]}: schema up to date")
    return 0


async def register(ultravox: UltravoxClient, url: str, new_secret: bool) -> dict[str, Any]:
    """Create the account webhook for `url`, or update the one that exists (all four call
    events; with `new_secret` a fresh secret first, the old ones kept for the switch-over)."""
    existing = await _find(ultravox, url)
    body: dict[str, Any] = {"url": url, "events": list(ULTRAVOX_EVENTS)}
    if new_secret:
        kept = list(existing.get("secrets") or []) if existing else []
        body["secrets"] = [secrets.token_hex(32), *kept][:5]
    if existing is None:
        answer = await ultravox.request("POST", "/webhooks", json=body)
    else:
        webhook_id = existing["webhookId"]
        answer = await ultravox.request("PATCH", f"/webhooks/{webhook_id}", json=body)
    if not isinstance(answer, dict) or "webhookId" not in answer:
        raise UltravoxError("Ultravox's answer is not a webhook")
    answer["_created"] = existing is None
    return answer


async def _find(ultravox: UltravoxClient, url: str) -> dict[str, Any] | None:
    params: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        page = await ultravox.request("GET", "/webhooks", params=params)
        results = page.get("results") if isinstance(page, dict) else None
        for webhook in results or []:
            if isinstance(webhook, dict) and webhook.get("url") == url:
                return webhook
        next_url = page.get("next") if isinstance(page, dict) else None
        cursor = httpx.URL(next_url).params.get("cursor") if next_url else None
        if not cursor:
            return None
        params = {"cursor": cursor}
    return None


def _register(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings is None:
        return 2
    if not args.url.startswith("https://") or not args.url.endswith("/ultravox/events"):
        print("--url must be https://<your host>/ultravox/events", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        # Ultravox's answers read no further than the service's own (app/http_transport.py).
        async with CappedTransport(httpx.AsyncHTTPTransport()) as transport:
            ultravox = UltravoxClient(
                transport,
                api_url=settings.ultravox_api_url,
                api_key=settings.ultravox_api_key.get_secret_value(),
                deadline_seconds=settings.ultravox_deadline_seconds,
            )
            return await register(ultravox, args.url, args.new_secret)

    try:
        webhook = asyncio.run(run())
    except UltravoxError as exc:
        print(f"Ultravox refused: {exc}", file=sys.stderr)
        return 1
    verb = "created" if webhook["_created"] else "updated"
    print(f"webhook {webhook['webhookId']} {verb}: {args.url}")
    print(f"events: {', '.join(webhook.get('events') or ULTRAVOX_EVENTS)}")
    found = [s for s in webhook.get("secrets") or [] if isinstance(s, str)]
    if not found:
        print("Ultravox returned no secret: run again with --new-secret", file=sys.stderr)
        return 1
    print("put this in the service's settings (.env or the Secret), then restart it:")
    print(f"ULTRAVOX_WEBHOOK_SECRETS={','.join(found)}")
    return 0


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    db = commands.add_parser("db", help="the call records database")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the schema migrations to DATABASE_URL (start-up does it too)"
    )
    upgrade.set_defaults(handler=_db_upgrade)

    webhook = commands.add_parser("ultravox-webhook", help="Ultravox's account webhook")
    webhook_commands = webhook.add_subparsers(dest="webhook_command", required=True)
    reg = webhook_commands.add_parser(
        "register",
        help="create or update the account webhook that sends call events to this service, "
        "and print the secret for ULTRAVOX_WEBHOOK_SECRETS",
    )
    reg.add_argument("--url", required=True, help="https://<your host>/ultravox/events")
    reg.add_argument(
        "--new-secret",
        action="store_true",
        help="add a fresh secret (the old ones stay valid until you remove them)",
    )
    reg.set_defaults(handler=_register)
