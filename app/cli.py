"""The `ultravox-bridge` command."""

import argparse
import os
import sys

from app.call_command import add_call_command
from app.check_config import add_check_config_command
from app.config import load_settings
from app.records_commands import add_commands as add_records_commands
from app.settings import ConfigError
from app.simulate import command as simulate


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
    add_check_config_command(commands)
    add_call_command(commands)
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
