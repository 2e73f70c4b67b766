"""The `ultravox-bridge` command."""

import argparse
import os
import sys
from functools import partial

from app.call_command import add_call_command
from app.check_config import add_check_config_command
from app.config import load_settings
from app.records_commands import add_commands as add_records_commands
from app.settings import ConfigError
from app.simulate import command as simulate


def _serve(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.main import create_app
    from app.routing import table_from_settings
    from app.server import serve
    from app.workers import serve_workers

    given = (("host", args.host), ("port", args.port), ("web_concurrency", args.workers))
    overrides = {k: v for k, v in given if v is not None}
    try:
        settings = load_settings(**overrides)
        table_from_settings(settings)  # the routes file's errors, before uvicorn starts
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.web_concurrency > 1:
        configure_logging(settings.log_level, mask_numbers=settings.log_phone_numbers == "masked")
        return serve_workers(partial(create_app, setup_logging=True), settings)
    serve(create_app(settings, setup_logging=True), settings)
    return 0


def _web_token(args: argparse.Namespace) -> int:
    from app.web.tokens import mint_token

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.web_call_secret is None:
        print("WEB_CALL_SECRET is not set: web calls need no token", file=sys.stderr)
        return 2
    if not 1 <= args.ttl <= settings.web_token_max_ttl_seconds:
        print(
            f"--ttl must be 1 to {settings.web_token_max_ttl_seconds} seconds "
            "(WEB_TOKEN_MAX_TTL_SECONDS)",
            file=sys.stderr,
        )
        return 2
    secret = settings.web_call_secret.get_secret_value()
    print(mint_token(secret, args.route, args.ttl, args.subject))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ultravox-bridge", description="Answers phone calls with Ultravox voice AI agents."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the webhook server")
    serve.add_argument("--host", help="address to listen on (default HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default PORT or 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (default WEB_CONCURRENCY or 1); more than 1 needs REDIS_URL",
    )
    serve.set_defaults(handler=_serve)
    simulate.add_command(commands)
    add_check_config_command(commands)
    add_call_command(commands)
    token = commands.add_parser(
        "web-token", help="mint a token for one web call of a route (WEB_CALL_SECRET)"
    )
    token.add_argument("--route", required=True, help="the route the call is for")
    token.add_argument("--ttl", type=int, default=300, help="seconds it stays valid (300)")
    token.add_argument("--subject", help="who the visitor is, copied into the call's metadata")
    token.set_defaults(handler=_web_token)
    add_records_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    try:
        result: int = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head -1`): not an error worth a traceback. Python would
        # flush stdout again at exit and fail the same way, so point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
