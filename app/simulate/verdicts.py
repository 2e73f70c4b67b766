"""What the service's answer means for a real call: a verdict in one word, an explanation that
says what to fix, and the exit status it gives `simulate`."""

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from app.providers.simulator import (
    AnswerKind,
    Simulator,
)

EXIT_STREAM = 0


EXIT_NO_STREAM = 1


@dataclass(frozen=True)
class Verdict:
    """What the answer means for a real call, in one word and a sentence or two."""

    name: str
    explanation: str
    stream_url: str | None = None

    @property
    def exit_status(self) -> int:
        return EXIT_STREAM if self.name == "stream" else EXIT_NO_STREAM


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


def timed_out(limit_seconds: float) -> Verdict:
    return Verdict(
        "timeout",
        f"no answer within {limit_seconds:g} s. Providers give up (the least patient after 15 s) "
        "and play an error or request the fallback URL. The service answers within "
        "ULTRAVOX_DEADLINE_SECONDS (8 s by default) plus the time to reach it: check that the "
        "URL reaches this service and not a stalled tunnel or proxy.",
    )


def unreachable(url: str, exc: httpx.HTTPError) -> Verdict:
    parts = urlsplit(url)
    return Verdict(
        "unreachable",
        f"could not connect to {parts.scheme}://{parts.netloc} ({type(exc).__name__}: {exc}). "
        "Is the service running and listening there, is the tunnel up, does the host name "
        "resolve, does the scheme (http or https) match, and is the TLS certificate valid?",
    )


def broken(url: str, exc: httpx.HTTPError) -> Verdict:
    return Verdict(
        "unreachable",
        f"the connection to {urlsplit(url).netloc} broke before a whole answer came back "
        f"({type(exc).__name__}: {exc}). A proxy or tunnel in front of the service may have "
        "dropped it: check its log and the service's.",
    )
