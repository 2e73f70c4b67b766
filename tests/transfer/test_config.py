"""The routes file's `transfer:` section and the start-up checks of what transfers need."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.routing import RoutesFileError, load_routing_table
from app.settings import ConfigError
from tests.conftest import make_settings, running_app
from tests.transfer.conftest import ROUTES, transfer_settings


def test_transfer_section_is_read_into_the_routes_plan(tmp_path: Path) -> None:
    settings = transfer_settings(tmp_path / "r.yaml")
    assert settings.routes_file is not None
    route = load_routing_table(settings.routes_file, settings).named("support")
    assert route is not None and route.transfer is not None
    sales, person, desk = route.transfer.targets.values()
    assert (sales.destination, sales.mode, sales.ring_timeout_seconds, sales.caller_id) == (
        "+15005550100",
        "cold",
        20,
        "+15005550001",
    )
    assert (person.mode, person.ring_timeout_seconds, person.caller_id, person.whisper) == (
        "warm",
        25,
        None,
        True,
    )
    assert desk.is_sip and desk.hours is not None
    berlin_monday_0859 = datetime(2026, 12, 7, 7, 59, tzinfo=UTC)
    berlin_monday_0900 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    berlin_friday_1700 = datetime(2026, 12, 11, 16, 0, tzinfo=UTC)
    assert not desk.hours.is_open(berlin_monday_0859)
    assert desk.hours.is_open(berlin_monday_0900)
    assert not desk.hours.is_open(berlin_friday_1700)


@pytest.mark.parametrize(
    ("transfer", "error"),
    [
        (
            "{targets: {sales: {number: '+15005550100', sip: 'sip:a@b.example'}}}",
            "routes[0]: transfer.targets.sales: set exactly one of number (E.164) or sip",
        ),
        (
            "{targets: {sales: {number: +15005550100}}}",
            "routes[0]: transfer.targets.sales.number: 15005550100 must be quoted",
        ),
        (
            "{targets: {Sales Team: {number: '+15005550100'}}}",
            "routes[0]: transfer.targets: target name 'Sales Team' must be lower-case",
        ),
        (
            "{targets: {s: {sip: 'desk.example.com'}}}",
            "routes[0]: transfer.targets.s.sip: 'desk.example.com' is not a SIP URI",
        ),
        (
            "{targets: {s: {number: '+15005550100', ring_timeout_seconds: 300}}}",
            "routes[0]: transfer.targets.s.ring_timeout_seconds: Input should be less than",
        ),
        (
            "{targets: {s: {number: '+15005550100', hours: {timezone: Mars/Olympus, "
            "open: {mon: '09:00-17:00'}}}}}",
            "routes[0]: transfer.targets.s.hours.timezone: 'Mars/Olympus' is not a time zone",
        ),
        (
            "{targets: {s: {number: '+15005550100', hours: {timezone: UTC, "
            "open: {mon-fri: '17:00-09:00'}}}}}",
            "routes[0]: transfer.targets.s.hours.open: '17:00-09:00' must end after it starts",
        ),
        (
            "{mode: blind, targets: {s: {number: '+15005550100'}}}",
            "routes[0]: transfer.mode: Input should be 'cold' or 'warm'",
        ),
    ],
)
def test_invalid_transfer_section_is_refused_naming_the_field(
    tmp_path: Path, transfer: str, error: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        'routes:\n  - number: "+15005550001"\n    inline: {systemPrompt: Hi}\n'
        f"    transfer: {transfer}\n"
    )
    with pytest.raises(RoutesFileError) as raised:
        load_routing_table(path, make_settings())
    assert str(raised.value).startswith(f"{path}: {error}")


def test_transfer_on_an_agent_route_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        'routes:\n  - number: "+15005550001"\n    agent: {id: a-1}\n'
        "    transfer: {targets: {s: {number: '+15005550100'}}}\n"
    )
    with pytest.raises(RoutesFileError) as raised:
        load_routing_table(path, make_settings())
    assert str(raised.value) == (
        f"{path}: routes[0]: transfer: needs an inline route: the bridge adds its transfer tool "
        "to the call's selectedTools, which an agent call cannot set"
    )


async def test_start_up_names_every_setting_transfers_need(tmp_path: Path) -> None:
    settings = transfer_settings(
        tmp_path / "r.yaml",
        transfer_token_secret=None,
        public_base_url=None,
        twilio_account_sid=None,
    )
    with pytest.raises(ConfigError) as raised:
        async with running_app(settings):
            pass
    assert str(raised.value) == (
        "invalid configuration:\n"
        "  TRANSFER_TOKEN_SECRET: is required when a route has transfer: (32+ characters, the "
        "same on every replica)\n"
        "  PUBLIC_BASE_URL: is required when a route has transfer: Ultravox and the providers "
        "call this service back at it\n"
        "  TWILIO_ACCOUNT_SID: is required for transfers of twilio calls"
    )


async def test_only_providers_the_transfer_routes_take_are_checked(tmp_path: Path) -> None:
    routes = ROUTES.replace("  - name: support\n", "  - name: support\n    provider: twilio\n")
    # Plivo's webhooks are served, but no transfer route takes Plivo calls: no PLIVO_AUTH_ID.
    settings = transfer_settings(
        tmp_path / "r.yaml", routes, plivo_auth_token="plivo-token", plivo_auth_id=None
    )
    async with running_app(settings) as client:
        desk = client.app.state.transfers  # type: ignore[attr-defined]
        assert sorted(desk.drivers) == ["twilio"]


def test_short_token_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        make_settings(transfer_token_secret="short")
