"""The `ultravox-bridge` command."""

import argparse
import sys

from app import simulate
from app.settings import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from app.main import create_app
    from app.server import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
