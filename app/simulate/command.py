"""The `ultravox-bridge simulate` command line: its options, the secret it signs with, and the
run that sends the webhook (send.py), judges the answer (verdicts.py) and prints it (render.py).
"""

import argparse
import asyncio
import sys
from urllib.parse import urlsplit

from pydantic import ValidationError

from app.providers import SIMULATORS
from app.providers.simulator import (
    HttpMethod,
    Simulator,
    SimulatorError,
)
from app.settings import describe_validation_error
from app.simulate.render import render
from app.simulate.send import DEFAULT_FROM, DEFAULT_TIMEOUT_SECONDS, DEFAULT_TO, simulate
from app.simulate.settings import SimulatorSettings
from app.simulate.verdicts import EXIT_STREAM

EXIT_USAGE = 2


def add_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `simulate` on the `ultravox-bridge` command line."""
    simulators = [SIMULATORS[name] for name in sorted(SIMULATORS)]
    secrets = ", ".join(f"{cls.title}: {cls.secret_setting}" for cls in simulators)
    methods = ", ".join(f"{cls.title} {cls.default_method}" for cls in simulators)
    parser = commands.add_parser(
        "simulate",
        help="send a signed test webhook to a running service and explain the answer",
        description=(
            "Sends the webhook PROVIDER would send for a new call, signed with the provider's "
            f"secret from the environment or .env ({secrets}), and prints the answer and a "
            "verdict. Exit status 0 only when the service answered with a stream to Ultravox; "
            "1 for any other answer or none; 2 for a usage error."
        ),
    )
    parser.add_argument(
        "provider",
        choices=sorted(SIMULATORS),
        metavar="PROVIDER",
        help=", ".join(sorted(SIMULATORS)),
    )
    parser.add_argument(
        "--url",
        help="the webhook URL as the provider calls it, e.g. https://HOST/PROVIDER/incoming",
    )
    parser.add_argument(
        "--from",
        dest="from_number",
        default=DEFAULT_FROM,
        metavar="NUMBER",
        help=f"caller (default {DEFAULT_FROM})",
    )
    parser.add_argument(
        "--to",
        dest="to_number",
        default=DEFAULT_TO,
        metavar="NUMBER",
        help=f"called number (default {DEFAULT_TO})",
    )
    parser.add_argument(
        "--method",
        choices=("GET", "POST"),
        type=str.upper,
        help=f"HTTP method (default: the provider's own default: {methods})",
    )
    parser.add_argument(
        "--secret",
        help="the signing secret, instead of the setting named above (it shows in shell history)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument(
        "--make-key-pair",
        action="store_true",
        help="print a new test key pair, for providers that sign with a private key, and exit",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `simulate` command: exit status 0 only for a stream answer."""
    simulator_class = SIMULATORS[args.provider]
    try:
        if args.make_key_pair:
            pair = simulator_class.make_key_pair()
            print(f"{simulator_class.secret_setting}={pair.private_key}")
            print(f"{simulator_class.service_secret_setting}={pair.public_key}")
            return EXIT_STREAM
        if not args.url:
            print("simulate: --url is required", file=sys.stderr)
            return EXIT_USAGE
        target = urlsplit(args.url)
        if target.scheme not in ("http", "https") or not target.netloc:
            print(f"simulate: --url must be an http(s) URL, not {args.url!r}", file=sys.stderr)
            return EXIT_USAGE
        simulator = simulator_class(args.secret or _secret(simulator_class))
    except SimulatorError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    method: HttpMethod = args.method or simulator_class.default_method
    simulation = asyncio.run(
        simulate(
            simulator,
            args.url,
            method=method,
            from_number=args.from_number,
            to_number=args.to_number,
            wait_seconds=args.timeout,
        )
    )
    print(render(simulation))
    return simulation.verdict.exit_status


def _secret(simulator_class: type[Simulator]) -> str:
    try:
        settings = SimulatorSettings()
    except ValidationError as exc:
        raise SimulatorError(describe_validation_error(exc)) from None
    secret = simulator_class.secret_from(settings)
    if not secret:
        raise SimulatorError(
            f"no {simulator_class.secret_setting}: set it in the environment or .env, or pass "
            "--secret"
        )
    return secret
