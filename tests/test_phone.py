"""Phone numbers are ASCII digits: other scripts' digits (which Python's `\\d` and
`str.isdigit` accept) are not phone numbers anywhere the service checks one."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import load_settings
from app.outbound.request import OutboundCallRequest
from app.phone import to_e164
from app.routing import RoutesFileError, load_routing_table
from app.settings import ConfigError
from tests.conftest import API_KEY, make_settings

# +15005550100 written in Arabic-Indic, Devanagari and full-width digits.
ARABIC_INDIC = "+1" + "".join(chr(0x0660 + int(d)) for d in "5005550100")
DEVANAGARI = "+" + "".join(chr(0x0966 + int(d)) for d in "15005550100")
FULL_WIDTH = "+" + "".join(chr(0xFF10 + int(d)) for d in "15005550100")
HOSTILE = [ARABIC_INDIC, DEVANAGARI, FULL_WIDTH]


@pytest.mark.parametrize("number", HOSTILE)
def test_non_ascii_digits_are_not_normalised_into_a_number(number: str) -> None:
    assert to_e164(number) == number
    assert to_e164(number.removeprefix("+")) == number.removeprefix("+")


@pytest.mark.parametrize("number", HOSTILE)
def test_fallback_dial_number_refuses_non_ascii_digits(number: str) -> None:
    with pytest.raises(ValidationError, match=r"must be a phone number in E\.164 form"):
        make_settings(fallback_dial_number=number)


@pytest.mark.parametrize("number", HOSTILE)
def test_outbound_from_number_setting_refuses_non_ascii_digits(
    number: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ULTRAVOX_API_KEY", API_KEY)
    monkeypatch.setenv("TWILIO_FROM_NUMBER", number)
    with pytest.raises(ConfigError, match=r"TWILIO_FROM_NUMBER: must be your number in E\.164"):
        load_settings()


@pytest.mark.parametrize("number", HOSTILE)
@pytest.mark.parametrize("field", ["to", "from"])
def test_outbound_request_refuses_non_ascii_digits(number: str, field: str) -> None:
    body = {"provider": "twilio", "to": "+15005550006", field: number}
    with pytest.raises(ValidationError, match=r"is not a phone number in E\.164 form"):
        OutboundCallRequest.model_validate(body)


@pytest.mark.parametrize("number", HOSTILE)
def test_routes_file_refuses_non_ascii_digits_in_numbers_and_prefixes(
    number: str, tmp_path: Path
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        f"routes:\n  - number: '{number}'\n    reject: true\n"
        f"  - number: '+15005550002'\n    caller_prefix: '{number[:5]}'\n    reject: true\n",
        encoding="utf-8",
    )
    with pytest.raises(RoutesFileError) as raised:
        load_routing_table(path, make_settings())
    assert str(raised.value).splitlines() == [
        f"{path}: routes[0]: number: '{number}' is not a phone number in E.164 form (+, country "
        "code, number, such as +15005550100)",
        f"{path}: routes[1]: caller_prefix: '{number[:5]}' must be the start of an E.164 number: "
        "+ then digits, such as +1500",
    ]


def test_routes_file_refuses_non_ascii_digits_in_durations(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    sixty = chr(0x0666) + chr(0x0660)  # 60 in Arabic-Indic digits
    path.write_text(f"default:\n  inline: {{maxDuration: '{sixty}s'}}\n", encoding="utf-8")
    with pytest.raises(RoutesFileError, match="must be a duration in seconds"):
        load_routing_table(path, make_settings())
