"""The `ultravox-bridge` command."""

import argparse
import sys

from app.call_command import add_call_command
from app.settings import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings, setup_logging=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
    )
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
    add_call_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
