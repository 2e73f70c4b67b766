"""The `ultravox-bridge` command."""

import argparse
import sys
from pathlib import Path

from app import simulate
from app.call_command import add_call_command
from app.records.commands import add_commands as add_records_commands
from app.settings import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from app.main import create_app
    from app.routing import table_from_settings
    from app.server import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
        table_from_settings(settings)  # the routes file's errors, before uvicorn starts
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    serve(create_app(settings, setup_logging=True), settings)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from app.routing import table_from_settings, unused_settings
    from app.routing.describe import routing_table_lines

    overrides = {"routes_file": args.routes_file} if args.routes_file is not None else {}
    try:
        settings = load_settings(**overrides)
        table = table_from_settings(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    source = (
        str(settings.routes_file) if settings.routes_file else "environment (ROUTES_FILE unset)"
    )
    print(f"settings: ok\nroutes: {source}")
    print("\n".join(routing_table_lines(table)))
    unused = unused_settings(settings)
    if unused:
        print(f"note: {', '.join(unused)} not used: ROUTES_FILE decides every call")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ultravox-bridge", description="Answers phone calls with Ultravox voice AI agents."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the webhook server")
    serve.add_argument("--host", help="address to listen on (default HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default PORT or 8000)")
    serve.set_defaults(handler=_serve)
    simulate.add_command(commands)
    check = commands.add_parser(
        "check-config",
        help="validate the settings and the routes file, print the routing table, and exit",
    )
    check.add_argument(
        "--routes-file", type=Path, help="routes file to check (default ROUTES_FILE)"
    )
    check.set_defaults(handler=_check_config)
    add_call_command(commands)
    add_records_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
