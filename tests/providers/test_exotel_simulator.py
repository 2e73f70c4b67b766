"""`simulate exotel`: the request Exotel's applets send (GET or POST, numbers in the national
0-form, the token in the URL's path), judged by how the Voicebot applet reads the JSON answer;
and the pieces the adapter is built from (numbers, settings)."""

import io
import json

import httpx
import pytest
import respx

from app.config import load_settings
from app.providers.exotel.numbers import national, to_e164
from app.providers.exotel.simulator import ExotelSimulator
from app.settings import ConfigError
from app.simulate.send import simulate
from tests.conftest import API_KEY, BASE_URL, JOIN_URL, running_app
from tests.providers.exotel_helpers import EXOTEL_TOKEN, exotel_settings

INDIAN_CALLER = "+911500555006"
INDIAN_NUMBER = "+911500555001"


async def simulated(
    method: str,
    url: str = f"{BASE_URL}/exotel/incoming",
    token: str = EXOTEL_TOKEN,
    **settings: object,
) -> tuple[object, httpx.Request | None, int]:
    with respx.mock(base_url="https://ultravox.test/api", assert_all_called=False) as ultravox:
        created = ultravox.post("/calls").respond(201, json={"callId": "c-1", "joinUrl": JOIN_URL})
        async with running_app(exotel_settings(**settings)) as client:
            simulation = await simulate(
                ExotelSimulator(token),
                url,
                method=method,  # type: ignore[arg-type]
                from_number=INDIAN_CALLER,
                to_number=INDIAN_NUMBER,
                transport=httpx.ASGITransport(app=client.app),  # type: ignore[attr-defined]
                progress=io.StringIO(),
            )
        last = created.calls.last.request if created.call_count else None
        return simulation, last, created.call_count


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_simulated_voicebot_request_gets_a_stream_verdict(method: str) -> None:
    simulation, sent, calls = await simulated(method)

    assert simulation.verdict.name == "stream"  # type: ignore[attr-defined]
    assert simulation.verdict.stream_url == JOIN_URL  # type: ignore[attr-defined]
    webhook = simulation.webhook  # type: ignore[attr-defined]
    assert webhook.url.startswith(f"{BASE_URL}/exotel/incoming/{EXOTEL_TOKEN}")
    assert webhook.fields["CallFrom"] == "01500555006"
    assert webhook.fields["CallTo"] == "01500555001"
    assert (webhook.method == "GET") == (webhook.body == b"")
    assert calls == 1
    metadata = json.loads(sent.content)["metadata"]  # type: ignore[union-attr]
    assert (metadata["callerNumber"], metadata["calledNumber"]) == (INDIAN_CALLER, INDIAN_NUMBER)


async def test_a_url_that_has_its_token_is_sent_as_given() -> None:
    simulation, _, calls = await simulated("GET", f"{BASE_URL}/exotel/incoming/{EXOTEL_TOKEN}")
    assert simulation.verdict.name == "stream"  # type: ignore[attr-defined]
    assert calls == 1


async def test_wrong_token_is_forbidden_and_explained() -> None:
    simulation, _, calls = await simulated("GET", token="another-token-" + "x" * 30)

    assert simulation.verdict.name == "forbidden"  # type: ignore[attr-defined]
    assert "EXOTEL_URL_TOKENS" in simulation.verdict.explanation  # type: ignore[attr-defined]
    assert calls == 0


async def test_no_route_is_a_reject_verdict(tmp_path: object) -> None:
    routes = tmp_path / "routes.yaml"  # type: ignore[operator]
    routes.write_text("routes:\n  - number: '+15005550009'\n    reject: true\n")
    simulation, _, calls = await simulated("GET", routes_file=routes)

    assert simulation.verdict.name == "reject"  # type: ignore[attr-defined]
    assert calls == 0


async def test_ultravox_failure_is_a_fallback_verdict() -> None:
    with respx.mock(base_url="https://ultravox.test/api") as ultravox:
        ultravox.post("/calls").respond(400, json={"detail": "bad agent"})
        async with running_app(exotel_settings()) as client:
            simulation = await simulate(
                ExotelSimulator(EXOTEL_TOKEN),
                f"{BASE_URL}/exotel/incoming",
                method="GET",
                transport=httpx.ASGITransport(app=client.app),  # type: ignore[attr-defined]
                progress=io.StringIO(),
            )

    assert simulation.status_code == 503
    assert simulation.verdict.name == "fallback"
    assert "next applet" in simulation.verdict.explanation


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, '{"url": "wss://x.test/j"}', "stream"),
        (200, '{"url": "https://x.test/j"}', "unexpected"),
        (200, '{"error": "x"}', "unexpected"),
        (200, "<Response/>", "unexpected"),
        (429, "over the limit\n", "unexpected"),
        (503, "no exotel secret is configured\n", "unavailable"),
    ],
)
def test_answers_are_read_as_the_voicebot_applet_reads_them(
    status: int, body: str, verdict: str
) -> None:
    from app.simulate.verdicts import judge

    result = judge(ExotelSimulator(EXOTEL_TOKEN), BASE_URL, status, body, httpx.Headers())
    assert result.name == verdict


# --- numbers and settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("09876543210", "+919876543210"),
        ("+919876543210", "+919876543210"),
        ("00919876543210", "+919876543210"),
        ("919876543210", "+919876543210"),
        ("098765 43210", "+919876543210"),
    ],
)
def test_exotel_numbers_become_e164(written: str, e164: str) -> None:
    assert to_e164(written, "91") == e164


@pytest.mark.parametrize(
    "written",
    [
        "0" + "\u0669\u0668\u0667\u0666\u0665\u0664\u0663\u0662\u0661\u0660",  # Arabic-Indic
        "\uff10\uff19\uff18\uff17\uff16\uff15\uff14\uff13\uff12\uff11\uff10",  # full-width
        "0987",
        "+0987654321",
        "1" * 33,
    ],
)
def test_what_is_not_a_number_of_ascii_digits_is_refused(written: str) -> None:
    with pytest.raises(ValueError):
        to_e164(written, "91")


def test_numbers_go_to_exotel_in_the_national_form_of_the_default_country() -> None:
    assert national("+919876543210", "91") == "09876543210"
    assert national("+15005550006", "91") == "+15005550006"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("exotel_url_tokens", "short-token", "EXOTEL_URL_TOKENS: each token must be at least 32"),
        ("exotel_url_tokens", "a" * 32 + "/", "EXOTEL_URL_TOKENS: each token must be at least 32"),
        ("exotel_allowed_ips", "exotel.com", "EXOTEL_ALLOWED_IPS: 'exotel.com' is not an IP"),
        ("exotel_default_country", "India", "EXOTEL_DEFAULT_COUNTRY: 'India' is neither one of"),
        ("exotel_subdomain", "evil.example.com", "EXOTEL_SUBDOMAIN: must be Exotel's API host"),
        ("exotel_app_id", "flow-1", "EXOTEL_APP_ID: must be the numeric id of the flow"),
        ("exotel_rate_limit_per_second", "0", "EXOTEL_RATE_LIMIT_PER_SECOND: Input should be"),
    ],
)
def test_invalid_exotel_settings_name_the_setting_and_the_fix(
    setting: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, ultravox_api_key=API_KEY, **{setting: value})
    assert message in str(raised.value)


def test_default_country_takes_a_calling_code_too() -> None:
    from app.providers.exotel.options import ExotelOptions

    settings = load_settings(
        _env_file=None, ultravox_api_key=API_KEY, exotel_default_country="+971"
    )
    assert ExotelOptions.of(settings).exotel_calling_code == "971"
