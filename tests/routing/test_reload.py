"""Reloading the routes file while the service runs: a valid file replaces the table, an invalid
one is logged and the table in force stays; SIGHUP triggers it."""

import asyncio
import logging
import os
import signal
from types import SimpleNamespace

import pytest
import respx

from app.inbound import Bridge
from app.routing import table_from_settings
from app.routing.reload import reload_routing
from tests.conftest import JOIN_URL, make_settings, running_app, twilio_fields, twilio_webhook
from tests.routing.conftest import RoutesFile

FIRST = """
    routes:
      - name: first
        number: "+15005550001"
        agent: {id: agent-first}
    """
SECOND = """
    routes:
      - name: second
        number: "+15005550001"
        agent: {id: agent-second}
    """
INVALID = """
    routes:
      - name: broken
        number: "+15005550001"
        agent: {id: agent-second, systemPrompt: hi}
    """


def reload_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [
        (record.getMessage(), record.fields)  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "app.routing"
    ]


async def test_reload_puts_the_new_file_in_force(
    routes_file: RoutesFile, ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    second = ultravox.post("/agents/agent-second/calls").respond(
        201, json={"callId": "c", "joinUrl": JOIN_URL}
    )
    caplog.set_level(logging.INFO, logger="app.routing")
    settings = routes_file.settings(FIRST)
    async with running_app(settings) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        routes_file.write(SECOND)

        assert reload_routing(bridge, settings) is True
        response = await twilio_webhook(twilio_fields()).send(client)

    assert second.call_count == 1
    assert response.status_code == 200
    assert reload_events(caplog) == [
        ("routes.reloaded", {"file": str(routes_file.path), "routes": 1, "default": "none"})
    ]


async def test_invalid_new_file_keeps_the_table_in_force(
    routes_file: RoutesFile, ultravox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    first = ultravox.post("/agents/agent-first/calls").respond(
        201, json={"callId": "c", "joinUrl": JOIN_URL}
    )
    caplog.set_level(logging.INFO, logger="app.routing")
    settings = routes_file.settings(FIRST)
    async with running_app(settings) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        table = bridge.routing
        routes_file.write(INVALID)

        assert reload_routing(bridge, settings) is False
        assert bridge.routing is table
        await twilio_webhook(twilio_fields()).send(client)

    assert first.call_count == 1
    error = (
        f"{routes_file.path}: routes[0] (broken): agent.systemPrompt: an agent call cannot set "
        "systemPrompt: change it on the agent in Ultravox, or make this an inline route"
    )
    assert reload_events(caplog) == [
        (
            "routes.reload_failed",
            {"file": str(routes_file.path), "error": error, "kept": "previous table"},
        )
    ]


async def test_reload_without_routes_file_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.routing")
    settings = make_settings()
    async with running_app(settings) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        table = bridge.routing
        assert reload_routing(bridge, settings) is False
        assert bridge.routing is table
    assert reload_events(caplog) == [
        ("routes.reload_skipped", {"reason": "ROUTES_FILE is not set"})
    ]


async def wait_for_new_table(bridge: Bridge, old: object) -> None:
    for _ in range(200):
        if bridge.routing is not old:
            return
        await asyncio.sleep(0.01)


async def test_sighup_reloads_the_routes_file(
    routes_file: RoutesFile, ultravox: respx.MockRouter
) -> None:
    second = ultravox.post("/agents/agent-second/calls").respond(
        201, json={"callId": "c", "joinUrl": JOIN_URL}
    )
    settings = routes_file.settings(FIRST)
    async with running_app(settings) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        old = bridge.routing
        # Without the app's handler SIGHUP would end the test process: make sure it is there.
        assert signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL
        routes_file.write(SECOND)

        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for_new_table(bridge, old)
        await twilio_webhook(twilio_fields()).send(client)

    assert second.call_count == 1
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


async def test_sighup_with_an_invalid_file_keeps_the_table(
    routes_file: RoutesFile, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.routing")
    settings = routes_file.settings(FIRST)
    async with running_app(settings) as client:
        bridge: Bridge = client.app.state.bridge  # type: ignore[attr-defined]
        table = bridge.routing
        assert signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL
        routes_file.write("routes: [")

        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if reload_events(caplog):
                break
            await asyncio.sleep(0.01)
        assert bridge.routing is table

    [(event, fields)] = reload_events(caplog)
    assert event == "routes.reload_failed"
    assert str(fields["error"]).startswith(f"{routes_file.path}: is not valid YAML (")


def test_unexpected_reload_failure_keeps_the_table(
    routes_file: RoutesFile, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_loader(*args: object) -> None:
        raise RuntimeError("disk on fire")

    caplog.set_level(logging.INFO, logger="app.routing")
    settings = routes_file.settings(FIRST)
    holder = SimpleNamespace(routing=table_from_settings(settings))
    table = holder.routing
    monkeypatch.setattr("app.routing.reload.load_routing_table", broken_loader)

    assert reload_routing(holder, settings) is False
    assert holder.routing is table
    [record] = [r for r in caplog.records if r.name == "app.routing"]
    assert record.getMessage() == "routes.reload_failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "disk on fire"
