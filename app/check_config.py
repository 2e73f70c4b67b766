"""`ultravox-bridge check-config`: everything that would stop the service or keep it from
taking calls, found in one pass (the settings, the routes file, the providers), and with
`--online` whether Ultravox takes the API key and Redis answers."""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config import Settings, load_settings
from app.settings import DEFAULT_FALLBACK_MESSAGE, ConfigError, ServiceSettings

# Each online check is one request; an answer slower than this is a problem in itself.
ONLINE_TIMEOUT_SECONDS = 10.0


class _RoutesInputs(BaseSettings):
    """What loading the routes file needs, read leniently: when the settings are invalid the
    routes file is still checked, so all mistakes are reported at once."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    routes_file: Path | None = None
    fallback_message: str = DEFAULT_FALLBACK_MESSAGE
    fallback_dial_number: str | None = None


@dataclass(frozen=True)
class Verdict:
    """One online check: its name, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'}: {self.detail}"


def add_check_config_command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    check = commands.add_parser(
        "check-config",
        help="validate the settings and the routes file, print the routing table, and exit",
    )
    check.add_argument(
        "--routes-file", type=Path, help="routes file to check (default ROUTES_FILE)"
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also check the Ultravox API key (one request) and Redis when REDIS_URL is set "
        "(one PING)",
    )
    check.set_defaults(handler=run_check_config)


def run_check_config(args: argparse.Namespace) -> int:
    """Exit 0 when the service would start and take calls; 2 with one line per problem."""
    from app.routing import table_from_settings, unused_settings
    from app.routing.describe import routing_table_lines

    overrides = {"routes_file": args.routes_file} if args.routes_file is not None else {}
    problems: list[str] = []
    settings: ServiceSettings | None = None
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        problems.append(str(exc))
    # Without valid settings the routes file is still checked, with what it needs read
    # leniently; the environment's single route is made of the settings already reported.
    routed = settings if settings is not None else _lenient_settings(overrides)
    table = None
    if settings is not None or routed.routes_file is not None:
        try:
            table = table_from_settings(routed)
        except ConfigError as exc:
            problems.append(str(exc))
    if settings is not None:
        problems += _readiness_problems(settings)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    assert settings is not None and table is not None
    source = (
        str(settings.routes_file) if settings.routes_file else "environment (ROUTES_FILE unset)"
    )
    print(f"settings: ok\nroutes: {source}")
    print("\n".join(routing_table_lines(table)))
    unused = unused_settings(settings)
    if unused:
        print(f"note: {', '.join(unused)} not used: ROUTES_FILE decides every call")
    if not args.online:
        return 0
    verdicts = [check_ultravox(settings)]
    if settings.redis_url is not None:
        verdicts.append(check_redis(settings))
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(verdict.ok for verdict in verdicts) else 2


def _lenient_settings(overrides: dict[str, Path]) -> ServiceSettings:
    try:
        inputs = _RoutesInputs(**overrides)  # type: ignore[arg-type]
    except ValidationError:
        inputs = _RoutesInputs.model_construct(**overrides)  # type: ignore[arg-type]
    return Settings.model_construct(**inputs.model_dump())


def _readiness_problems(settings: ServiceSettings) -> list[str]:
    """Valid settings with which the service would start but take no call."""
    from app.providers import NO_PROVIDER_HINT, build_adapters, providers_taking_calls

    if providers_taking_calls(settings, build_adapters(settings)):
        return []
    return [NO_PROVIDER_HINT]


def check_ultravox(
    settings: ServiceSettings, transport: httpx.BaseTransport | None = None
) -> Verdict:
    """One request with the API key: Ultravox's account of the key (GET /accounts/me)."""
    url = f"{settings.ultravox_api_url}/accounts/me"
    headers = {"X-API-Key": settings.ultravox_api_key.get_secret_value()}
    try:
        with httpx.Client(transport=transport, timeout=ONLINE_TIMEOUT_SECONDS) as client:
            response = client.get(url, headers=headers)
    except httpx.TimeoutException:
        return Verdict("ultravox", False, f"no answer from {url} in {ONLINE_TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as exc:
        return Verdict("ultravox", False, f"cannot reach {url} ({type(exc).__name__}: {exc})")
    if response.status_code == 200:
        name = _account_name(response)
        return Verdict("ultravox", True, f"ULTRAVOX_API_KEY accepted{name}")
    if response.status_code in (401, 403):
        return Verdict(
            "ultravox",
            False,
            f"ULTRAVOX_API_KEY refused ({response.status_code}): copy a current key from the "
            "Ultravox console (Settings > API keys)",
        )
    return Verdict(
        "ultravox",
        False,
        f"{url} answered {response.status_code}: is ULTRAVOX_API_URL Ultravox's API "
        "(https://api.ultravox.ai/api)?",
    )


def _account_name(response: httpx.Response) -> str:
    try:
        account = response.json()
    except ValueError:
        return ""
    name = account.get("name") if isinstance(account, dict) else None
    return f" (account {str(name)[:100]!r})" if name else ""


def check_redis(settings: ServiceSettings) -> Verdict:
    """One PING to REDIS_URL, within the same budget as every other online check."""
    import redis

    assert settings.redis_url is not None
    url = settings.redis_url.get_secret_value()
    shown = _without_password(url)
    client = redis.Redis.from_url(
        url, socket_timeout=ONLINE_TIMEOUT_SECONDS, socket_connect_timeout=ONLINE_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.AuthenticationError:
        return Verdict("redis", False, f"{shown} refused the password in REDIS_URL")
    except (redis.RedisError, OSError) as exc:
        return Verdict("redis", False, f"no answer to PING from {shown} ({exc})")
    finally:
        client.close()
    return Verdict("redis", True, f"{shown} answered PING")


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
