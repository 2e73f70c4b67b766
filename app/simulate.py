"""`ultravox-bridge simulate`: send a running service the webhook a provider would send for a
new call, signed as the provider signs it, and say whether a real call would reach Ultravox.

The provider specifics (fields, signing, XML dialect) come from the provider's simulator in
`app/providers/`; this module builds the request, sends it, and explains the answer.
"""

import argparse
import asyncio
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from app.providers import SIMULATORS
from app.providers.simulator import (
    AnswerKind,
    HttpMethod,
    SimulatedWebhook,
    Simulator,
    SimulatorError,
    SimulatorSettings,
)
from app.settings import describe_validation_error

DEFAULT_FROM = "+15005550006"
DEFAULT_TO = "+15005550001"
# The least patient provider (Twilio) gives up on a webhook after 15 s.
DEFAULT_TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_SHOWN_BODY_CHARS = 4000
# Plivo accepts answers up to 100 KB; anything far larger is not a webhook answer.
MAX_ANSWER_BYTES = 256 * 1024
PROGRESS_INTERVAL_SECONDS = 0.2

# Tells simulated webhooks from the provider's in proxy and access logs; no signature covers it.
USER_AGENT = {"User-Agent": "ultravox-bridge-simulate"}

EXIT_STREAM = 0
EXIT_NO_STREAM = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Verdict:
    """What the answer means for a real call, in one word and a sentence or two."""

    name: str
    explanation: str
    stream_url: str | None = None

    @property
    def exit_status(self) -> int:
        return EXIT_STREAM if self.name == "stream" else EXIT_NO_STREAM


@dataclass(frozen=True)
class Simulation:
    """One simulated webhook and what came back."""

    webhook: SimulatedWebhook
    verdict: Verdict
    status_code: int | None = None
    content_type: str = ""
    body: str = ""
    elapsed_seconds: float = 0.0


class Progress:
    """A line on stderr while waiting: rewritten in place on a terminal, written once otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()

    def start(self, what: str, timeout: float) -> "asyncio.Task[None] | None":
        """Show the line; on a terminal, a task keeps the elapsed time current until cancelled."""
        if not self._live:
            self._stream.write(f"{what}: waiting up to {timeout:g} s for the answer\n")
            self._stream.flush()
            return None
        return asyncio.create_task(self._tick(what, timeout))

    async def _tick(self, what: str, limit_seconds: float) -> None:
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            self._stream.write(f"\r{what}: waiting {elapsed:4.1f} s of {limit_seconds:g} s ")
            self._stream.flush()
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)

    def clear(self) -> None:
        if self._live:
            self._stream.write("\r\033[K")
            self._stream.flush()


async def simulate(
    simulator: Simulator,
    url: str,
    *,
    method: HttpMethod,
    from_number: str = DEFAULT_FROM,
    to_number: str = DEFAULT_TO,
    wait_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    transport: httpx.AsyncBaseTransport | None = None,
    progress: TextIO | None = None,
) -> Simulation:
    """Send `simulator`'s webhook for a new call to `url` and judge the answer."""
    webhook = simulator.webhook(url, method, from_number, to_number)
    limits = httpx.Timeout(wait_seconds, connect=min(wait_seconds, CONNECT_TIMEOUT_SECONDS))
    line = Progress(progress or sys.stderr)
    ticker = line.start(f"{simulator.title} {method} {webhook.call_id} -> {url}", wait_seconds)
    started = time.monotonic()
    try:
        # httpx's timeouts bound each read; this bounds the whole exchange, as providers do.
        async with asyncio.timeout(wait_seconds):
            status, headers, body = await _send(webhook, limits, transport)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        return Simulation(webhook, _unreachable(url, exc))
    except (TimeoutError, httpx.TimeoutException):
        return Simulation(webhook, _timed_out(wait_seconds))
    except httpx.HTTPError as exc:
        return Simulation(webhook, _broken(url, exc))
    finally:
        if ticker is not None:
            ticker.cancel()
        line.clear()
    elapsed = time.monotonic() - started
    if body is None:
        verdict = Verdict(
            "unexpected", f"the answer is over {MAX_ANSWER_BYTES // 1024} KiB: no provider takes it"
        )
        return Simulation(webhook, verdict, status, headers.get("content-type", ""), "", elapsed)
    text = body.decode("utf-8", errors="replace")
    return Simulation(
        webhook,
        judge(simulator, url, status, text, headers),
        status,
        headers.get("content-type", ""),
        text,
        elapsed,
    )


async def _send(
    webhook: SimulatedWebhook, limits: httpx.Timeout, transport: httpx.AsyncBaseTransport | None
) -> tuple[int, httpx.Headers, bytes | None]:
    """Status, headers and body of the answer; the body is None when it is too large to show."""
    async with (
        httpx.AsyncClient(transport=transport, timeout=limits, headers=USER_AGENT) as client,
        client.stream(
            webhook.method, webhook.url, headers=webhook.headers, content=webhook.body
        ) as response,
    ):
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                return response.status_code, response.headers, None
        return response.status_code, response.headers, bytes(body)


def judge(
    simulator: Simulator, url: str, status: int, body: str, headers: httpx.Headers
) -> Verdict:
    """The verdict on the service's answer `status` and `body`."""
    reason = body.strip()[:300]
    if status == 200:
        return _judge_xml(simulator, body, url)
    if status == 403:
        return Verdict("forbidden", simulator.forbidden_hint(url))
    if status == 400:
        return Verdict(
            "bad-request",
            f"the service found the webhook malformed ({reason}). simulate sends the fields "
            f"{simulator.title} sends: is {url} the bridge's /{simulator.name}/incoming?",
        )
    if status == 404:
        return Verdict(
            "not-found",
            f"nothing answers at this path. The bridge's {simulator.title} webhook is "
            f"/{simulator.name}/incoming on the service's public URL.",
        )
    if status == 413:
        return Verdict(
            "too-large",
            "the service (or a proxy in front of it) refused the body as too large; the bridge "
            "accepts up to 64 KiB, so check the proxy's body-size limit.",
        )
    if status == 503:
        return Verdict(
            "unavailable",
            f"the service cannot take {simulator.title} calls ({reason}). If it says no secret "
            f"is configured, set {simulator.service_secret_setting} on the service; otherwise a "
            "proxy or tunnel in front of it cannot reach it or it is shutting down.",
        )
    if 300 <= status < 400:
        return Verdict(
            "redirect",
            f"the URL redirects to {headers.get('location')}. Give the provider the final URL: "
            "providers sign the URL they request, so a redirect breaks the signature.",
        )
    return Verdict("unexpected", f"the service answered HTTP {status}: {reason}")


def _judge_xml(simulator: Simulator, body: str, url: str) -> Verdict:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return Verdict(
            "unexpected", f"the answer is not XML ({exc}), so {simulator.title} would fail the call"
        )
    reading = simulator.read_answer(root)
    if reading.kind is AnswerKind.STREAM:
        return Verdict(
            "stream",
            f"{reading.detail}: a real {simulator.title} call would be connected to your agent. "
            "This simulated call is never joined; Ultravox ends it after its join timeout.",
            reading.stream_url,
        )
    if reading.kind is AnswerKind.FALLBACK and _is_fallback_url(url):
        return Verdict(
            "fallback",
            f"the answer {reading.detail}, as it always is at this URL: /{simulator.name}/fallback "
            "is the provider's fallback URL, which answers with the fallback without asking "
            f"Ultravox. To check a call, simulate /{simulator.name}/incoming.",
        )
    if reading.kind is AnswerKind.FALLBACK:
        return Verdict(
            "fallback",
            f"the answer {reading.detail}. Ultravox could not create the call: check "
            "ULTRAVOX_API_KEY, the agent id (ULTRAVOX_AGENT_ID or the route's agent), that the "
            "service reaches ULTRAVOX_API_URL, and the service log, whose webhook.fallback line "
            "gives Ultravox's status and reason (429: over your plan's concurrent calls or "
            "request rate; UltravoxConnectionError: no connection to Ultravox).",
        )
    if reading.kind is AnswerKind.REJECT:
        return Verdict(
            "reject",
            f"the answer is {reading.detail}: the service has no route for the called number "
            "(or its route rejects calls). Check the routing, or pass --to with a routed number.",
        )
    return Verdict("unexpected", f"{simulator.title} could not use this answer: {reading.detail}")


def _is_fallback_url(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/fallback")


def _timed_out(limit_seconds: float) -> Verdict:
    return Verdict(
        "timeout",
        f"no answer within {limit_seconds:g} s. Providers give up (the least patient after 15 s) "
        "and play an error or request the fallback URL. The service answers within "
        "ULTRAVOX_DEADLINE_SECONDS (8 s by default) plus the time to reach it: check that the "
        "URL reaches this service and not a stalled tunnel or proxy.",
    )


def _unreachable(url: str, exc: httpx.HTTPError) -> Verdict:
    parts = urlsplit(url)
    return Verdict(
        "unreachable",
        f"could not connect to {parts.scheme}://{parts.netloc} ({type(exc).__name__}: {exc}). "
        "Is the service running and listening there, is the tunnel up, does the host name "
        "resolve, does the scheme (http or https) match, and is the TLS certificate valid?",
    )


def _broken(url: str, exc: httpx.HTTPError) -> Verdict:
    return Verdict(
        "unreachable",
        f"the connection to {urlsplit(url).netloc} broke before a whole answer came back "
        f"({type(exc).__name__}: {exc}). A proxy or tunnel in front of the service may have "
        "dropped it: check its log and the service's.",
    )


def render(simulation: Simulation) -> str:
    """The report printed on stdout: the request, the HTTP status, the XML and the verdict."""
    webhook, verdict = simulation.webhook, simulation.verdict
    fields = webhook.fields
    lines = [
        f"request:  {webhook.method} {webhook.url}",
        f"call:     {fields.get('From')} -> {fields.get('To')}, call id {webhook.call_id}",
    ]
    if simulation.status_code is not None:
        lines.append(
            f"status:   HTTP {simulation.status_code} {simulation.content_type} "
            f"in {simulation.elapsed_seconds * 1000:.0f} ms"
        )
        body = simulation.body.strip()
        if len(body) > MAX_SHOWN_BODY_CHARS:
            body = body[:MAX_SHOWN_BODY_CHARS] + " ..."
        lines.append("answer:")
        lines.extend("  " + line for line in (body or "(empty)").splitlines())
    lines.append(f"verdict:  {verdict.name}: {verdict.explanation}")
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------


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
