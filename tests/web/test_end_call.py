"""`POST /web/calls/{call_id}/end`: the page that started a web call ends it with the call's
end secret, which hangs the Ultravox call up (keeping its transcript, recording and summary) and
frees its live-call place at once; anyone else is refused, and ending twice is harmless."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY

from tests.conftest import AGENT_ID, API_KEY, CALL_ID, created_call, running_app
from tests.web.conftest import ORIGIN, SITE, post_call, web_settings

OTHER_CALL_ID = "3f1c2d4e-0000-4000-8000-000000000002"
HANG_UP = {"type": "hang_up", "message": ""}
NOT_LIVE = httpx.Response(422, json={"detail": "Call is not active"})


def ends(outcome: str) -> float:
    return REGISTRY.get_sample_value("bridge_web_call_ends_total", {"outcome": outcome}) or 0.0


class EndingRoutes:
    """Ultravox's routes that ending a call may use, each mocked to answer 404 until a test
    says otherwise, so that every request the bridge sends is counted and none goes unnoticed."""

    def __init__(self, ultravox: respx.MockRouter, call_id: str = CALL_ID) -> None:
        gone = httpx.Response(404, json={"detail": "Not found."})
        self.hang_up = ultravox.post(f"/calls/{call_id}/send_data_message").mock(
            return_value=httpx.Response(204)
        )
        self.progress = ultravox.get(f"/calls/{call_id}").mock(return_value=gone)
        self.delete = ultravox.delete(f"/calls/{call_id}").mock(return_value=gone)

    def hang_up_bodies(self) -> list[Any]:
        return [json.loads(call.request.content) for call in self.hang_up.calls]

    def counts(self) -> tuple[int, int, int]:
        """How many hang-ups, progress reads and deletions the bridge sent."""
        return (self.hang_up.call_count, self.progress.call_count, self.delete.call_count)


def call_at_ultravox(joined: str | None, ended: str | None, reason: str | None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "callId": CALL_ID,
            "created": "2026-11-24T10:00:00Z",
            "joined": joined,
            "ended": ended,
            "endReason": reason,
            "joinUrl": "wss://voice.ultravox.test/calls/x",
        },
    )


async def end_call(
    client: httpx.AsyncClient, call_id: str, body: Any, origin: str | None = ORIGIN
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if origin is not None:
        headers["origin"] = origin
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    return await client.post(f"/web/calls/{call_id}/end", content=content, headers=headers)


@pytest.fixture
def one_line(tmp_path: Path) -> Any:
    """Settings with one web call line, and room in the rate limits for several calls."""
    return web_settings(tmp_path, web_max_concurrent_calls=1, web_ip_burst=5)


async def test_page_ends_its_call_and_frees_its_place(
    one_line: Any, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").side_effect = [
        created_call(),
        created_call(call_id=OTHER_CALL_ID),
    ]
    routes = EndingRoutes(ultravox)
    before = ends("ended")
    async with running_app(one_line) as client:
        first = await post_call(client, {"route": "sales"})
        busy = await post_call(client, {"route": "sales"})
        ended = await end_call(client, CALL_ID, {"endSecret": first.json()["endSecret"]})
        after = await post_call(client, {"route": "sales"})
    assert (first.status_code, busy.status_code) == (201, 429)
    assert ended.status_code == 204
    assert ended.content == b""
    assert ended.headers["access-control-allow-origin"] == ORIGIN
    # Hung up as the agent would, with nothing more to say; never deleted, so Ultravox keeps
    # the call's transcript, recording and summary.
    assert routes.hang_up_bodies() == [HANG_UP]
    assert routes.hang_up.calls[0].request.headers["x-api-key"] == API_KEY
    assert routes.counts() == (1, 0, 0)
    assert after.status_code == 201
    assert after.json()["callId"] == OTHER_CALL_ID
    assert ends("ended") == before + 1


async def test_each_call_has_its_own_secret_kept_only_as_a_hash(
    one_line: Any, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").side_effect = [
        created_call(),
        created_call(call_id=OTHER_CALL_ID),
    ]
    settings = one_line.model_copy(update={"web_max_concurrent_calls": 2})
    async with running_app(settings) as client:
        first = (await post_call(client, {"route": "sales"})).json()["endSecret"]
        second = (await post_call(client, {"route": "sales"})).json()["endSecret"]
        record = await client.app.state.web_calls.limits.get(f"call:{CALL_ID}")  # type: ignore[attr-defined]
        crossed = await end_call(client, CALL_ID, {"endSecret": second})
    assert first != second
    assert record is not None and first not in record
    assert crossed.status_code == 403


async def test_wrong_secret_is_refused_and_the_call_keeps_its_place(
    one_line: Any, ultravox: respx.MockRouter
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    before = ends("forbidden_secret")
    async with running_app(one_line) as client:
        first = await post_call(client, {"route": "sales"})
        wrong = await end_call(client, CALL_ID, {"endSecret": "x" * 43})
        after_wrong = routes.counts()
        busy = await post_call(client, {"route": "sales"})
        right = await end_call(client, CALL_ID, {"endSecret": first.json()["endSecret"]})
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "the end secret is not this call's"}
    assert after_wrong == (0, 0, 0)
    assert busy.status_code == 429
    assert right.status_code == 204
    assert routes.counts() == (1, 0, 0)
    assert ends("forbidden_secret") == before + 1


async def test_a_second_end_is_harmless(one_line: Any, ultravox: respx.MockRouter) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").side_effect = [
        created_call(),
        created_call(call_id=OTHER_CALL_ID),
    ]
    routes = EndingRoutes(ultravox)
    before = ends("already_ended")
    async with running_app(one_line) as client:
        first = await post_call(client, {"route": "sales"})
        secret = {"endSecret": first.json()["endSecret"]}
        once = await end_call(client, CALL_ID, secret)
        next_call = await post_call(client, {"route": "sales"})
        twice = await end_call(client, CALL_ID, secret)
        wrong = await end_call(client, CALL_ID, {"endSecret": "x" * 43})
        # The repeat freed nothing: the next call still holds the one line.
        busy = await post_call(client, {"route": "sales"})
    assert (once.status_code, twice.status_code) == (204, 204)
    assert wrong.status_code == 403
    assert next_call.status_code == 201
    assert busy.status_code == 429
    assert routes.counts() == (1, 0, 0)
    assert ends("already_ended") == before + 1


@pytest.mark.parametrize("call_id", [CALL_ID, "x" * 65, "a.b"])
async def test_unknown_call_is_404(
    tmp_path: Path, ultravox: respx.MockRouter, call_id: str
) -> None:
    before = ends("not_found")
    async with running_app(web_settings(tmp_path)) as client:
        response = await end_call(client, call_id, {"endSecret": "x" * 43})
    assert response.status_code == 404
    assert response.json() == {"detail": "no live web call has this id: it has ended by itself"}
    assert ends("not_found") == before + 1
    assert not ultravox.calls


@pytest.mark.parametrize(
    ("origin", "allowed"), [(None, ""), (SITE, ""), (SITE, SITE)], ids=["none", "other", "site"]
)
async def test_only_allowed_origins_may_end_calls(
    tmp_path: Path, ultravox: respx.MockRouter, origin: str | None, allowed: str
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    before = ends("forbidden_origin")
    preflight_headers = {"access-control-request-method": "POST"}
    if origin is not None:
        preflight_headers["origin"] = origin
    async with running_app(web_settings(tmp_path, web_allowed_origins=allowed)) as client:
        secret = (await post_call(client, {"route": "sales"})).json()["endSecret"]
        preflight = await client.options(f"/web/calls/{CALL_ID}/end", headers=preflight_headers)
        response = await end_call(client, CALL_ID, {"endSecret": secret}, origin=origin)
    if allowed:
        assert (preflight.status_code, response.status_code) == (204, 204)
        assert preflight.headers["access-control-allow-origin"] == SITE
        assert response.headers["access-control-allow-origin"] == SITE
        assert routes.counts() == (1, 0, 0)
    else:
        assert (preflight.status_code, response.status_code) == (403, 403)
        assert "access-control-allow-origin" not in response.headers
        assert ends("forbidden_origin") == before + 1
        assert routes.counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({}, 422, "invalid request: endSecret: Field required"),
        (
            {"endSecret": "s", "callId": "x"},
            422,
            "invalid request: callId: Extra inputs are not permitted",
        ),
        (
            {"endSecret": "x" * 129},
            422,
            "invalid request: endSecret: String should have at most 128 characters",
        ),
        (b"{not json", 422, None),
        (b'{"endSecret": "' + b"x" * 9000 + b'"}', 413, "body over 8192 bytes"),
    ],
    ids=["missing", "extra", "long", "not_json", "huge"],
)
async def test_malformed_end_is_refused(
    tmp_path: Path, ultravox: respx.MockRouter, body: Any, status: int, detail: str | None
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    async with running_app(web_settings(tmp_path)) as client:
        await post_call(client, {"route": "sales"})
        response = await end_call(client, CALL_ID, body)
    assert response.status_code == status
    if detail is not None:
        assert response.json() == {"detail": detail}
    assert len(ultravox.calls) == 1  # the creation only


async def test_call_the_visitor_already_left_is_not_deleted(
    one_line: Any, ultravox: respx.MockRouter
) -> None:
    """The page leaves the call before it tells the bridge, so Ultravox has usually ended the
    call already: the hang-up is refused as not live, and the call's record says it is over."""
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    routes.hang_up.mock(return_value=NOT_LIVE)
    routes.progress.mock(
        return_value=call_at_ultravox("2026-11-24T10:00:02Z", "2026-11-24T10:01:00Z", "hangup")
    )
    before = ends("ended")
    async with running_app(one_line) as client:
        secret = {"endSecret": (await post_call(client, {"route": "sales"})).json()["endSecret"]}
        ended = await end_call(client, CALL_ID, secret)
        after = await post_call(client, {"route": "sales"})
    assert ended.status_code == 204
    assert routes.hang_up_bodies() == [HANG_UP]
    assert routes.counts() == (1, 1, 0)
    assert routes.progress.calls[0].request.headers["x-api-key"] == API_KEY
    assert after.status_code == 201
    assert ends("ended") == before + 1


async def test_call_nobody_joined_is_deleted_so_its_join_url_dies_with_its_place(
    one_line: Any, ultravox: respx.MockRouter
) -> None:
    """An unjoined call has said nothing, so deleting it loses nothing; left alone, its joinUrl
    would still start a call after its place was freed."""
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    routes.hang_up.mock(return_value=NOT_LIVE)
    routes.progress.mock(return_value=call_at_ultravox(None, None, None))
    routes.delete.mock(return_value=httpx.Response(204))
    async with running_app(one_line) as client:
        secret = {"endSecret": (await post_call(client, {"route": "sales"})).json()["endSecret"]}
        ended = await end_call(client, CALL_ID, secret)
        after = await post_call(client, {"route": "sales"})
    assert ended.status_code == 204
    assert routes.counts() == (1, 1, 1)
    assert after.status_code == 201


@pytest.mark.parametrize(
    ("second_hang_up", "hang_ups"),
    [(httpx.Response(204), 2), (NOT_LIVE, 2)],
    ids=["joined_meanwhile", "ending_meanwhile"],
)
async def test_call_joined_but_not_live_is_hung_up_again_never_deleted(
    one_line: Any, ultravox: respx.MockRouter, second_hang_up: httpx.Response, hang_ups: int
) -> None:
    """Refused, yet joined and not ended: it joined after the hang-up (the second one ends it),
    or the visitor just left and Ultravox has not written `ended` yet (refused again: over)."""
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    routes.hang_up.side_effect = [NOT_LIVE, second_hang_up]
    routes.progress.mock(return_value=call_at_ultravox("2026-11-24T10:00:02Z", None, None))
    async with running_app(one_line) as client:
        secret = {"endSecret": (await post_call(client, {"route": "sales"})).json()["endSecret"]}
        ended = await end_call(client, CALL_ID, secret)
        after = await post_call(client, {"route": "sales"})
    assert ended.status_code == 204
    assert routes.hang_up_bodies() == [HANG_UP] * hang_ups
    assert routes.counts() == (hang_ups, 1, 0)
    assert after.status_code == 201


FAILED = {"detail": "the call could not be ended now: it ends by itself at its maxDuration"}
BUSY = httpx.Response(503, json={}, headers={"Retry-After": "30"})  # longer than the deadline
BROKEN = httpx.Response(500, json={})
UNJOINED = call_at_ultravox(None, None, None)


@pytest.mark.parametrize(
    ("answers", "retry_after", "sent"),
    [
        ((BUSY, None, None), "5", (1, 0, 0)),
        ((BROKEN, None, None), None, (1, 0, 0)),
        ((NOT_LIVE, BUSY, None), "5", (1, 1, 0)),
        ((NOT_LIVE, httpx.Response(200, text="<html>"), None), None, (1, 1, 0)),
        ((NOT_LIVE, UNJOINED, BROKEN), None, (1, 1, 1)),
    ],
    ids=["hang_up_busy", "hang_up_broken", "progress_busy", "progress_not_json", "delete_broken"],
)
async def test_ultravox_failing_to_end_keeps_the_place_until_a_retry_ends_it(
    one_line: Any,
    ultravox: respx.MockRouter,
    answers: tuple[httpx.Response, httpx.Response | None, httpx.Response | None],
    retry_after: str | None,
    sent: tuple[int, int, int],
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    hang_up, progress, delete = answers
    routes.hang_up.side_effect = [hang_up, httpx.Response(204)]
    if progress is not None:
        routes.progress.mock(return_value=progress)
    if delete is not None:
        routes.delete.mock(return_value=delete)
    before = ends("ultravox_failed")
    async with running_app(one_line) as client:
        secret = {"endSecret": (await post_call(client, {"route": "sales"})).json()["endSecret"]}
        failed = await end_call(client, CALL_ID, secret)
        failed_sent = routes.counts()
        busy = await post_call(client, {"route": "sales"})
        retried = await end_call(client, CALL_ID, secret)
    assert failed.status_code == 502
    assert failed.json() == FAILED
    assert failed.headers.get("retry-after") == retry_after
    assert failed_sent == sent
    assert busy.status_code == 429
    assert retried.status_code == 204
    assert routes.hang_up.call_count == 2
    assert ends("ultravox_failed") == before + 1


@pytest.mark.parametrize("gone_at", ["hang_up", "progress"])
async def test_a_call_ultravox_no_longer_has_counts_as_ended(
    one_line: Any, ultravox: respx.MockRouter, gone_at: str
) -> None:
    ultravox.post(f"/agents/{AGENT_ID}/calls").mock(return_value=created_call())
    routes = EndingRoutes(ultravox)
    if gone_at == "hang_up":
        routes.hang_up.mock(return_value=httpx.Response(404, json={}))
    else:
        routes.hang_up.mock(return_value=NOT_LIVE)
    async with running_app(one_line) as client:
        secret = {"endSecret": (await post_call(client, {"route": "sales"})).json()["endSecret"]}
        ended = await end_call(client, CALL_ID, secret)
        after = await post_call(client, {"route": "sales"})
    assert ended.status_code == 204
    assert routes.counts() == ((1, 0, 0) if gone_at == "hang_up" else (1, 1, 0))
    assert after.status_code == 201
