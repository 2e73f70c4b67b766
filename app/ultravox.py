"""Client for Ultravox's REST API: creates, reads and ends calls within a deadline, retrying
what can help."""

import asyncio
import email.utils
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from app import metrics
from app.http_transport import ACCEPTED_ENCODINGS

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
SUCCESS = range(200, 300)
# Errors raised before the request reached Ultravox, so a retry cannot create a second call.
# A read timeout is not among them: Ultravox may have created the call already.
RETRYABLE_TRANSPORT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Request bodies as httpx's `json=` encodes them (compact, UTF-8, no NaN), with one encoder.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# The call fields `POST /agents/{id}/calls` takes besides `medium`; Ultravox refuses others
# (systemPrompt, model, inactivityMessages, languageHint, ...). The one list every agent call
# is checked against: ULTRAVOX_CALL_OPTIONS, the routes file's `agent:` (whose model must list
# the same fields) and outbound requests that name an agentId.
AGENT_CALL_FIELDS = frozenset(
    {
        "templateContext",
        "voice",
        "maxDuration",
        "joinTimeout",
        "recordingEnabled",
        "metadata",
        "initialMessages",
        "firstSpeakerSettings",
        "callbacks",
    }
)


class UltravoxError(Exception):
    """Ultravox did not give us a call. `retryable` says whether trying again could help."""

    retryable = False
    status_code: int | None = None


class UltravoxConnectionError(UltravoxError):
    """The request never reached Ultravox (DNS, refused connection, connect timeout)."""

    retryable = True


class UltravoxTransportError(UltravoxError):
    """The connection broke after the request was sent: Ultravox may have created the call, so
    repeating the request could create a second one."""


class UltravoxTimeout(UltravoxError):
    """The deadline for creating the call passed before Ultravox answered."""


class UltravoxHTTPError(UltravoxError):
    """Ultravox answered with an error status."""

    def __init__(self, status_code: int, body: str, retry_after: float | None = None) -> None:
        super().__init__(f"Ultravox answered {status_code}: {body[:300]}")
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after


class UltravoxRateLimited(UltravoxHTTPError):
    """429: over the request rate or the plan's concurrent-call cap."""

    retryable = True


class UltravoxUnavailable(UltravoxHTTPError):
    """502, 503 or 504: Ultravox or its capacity is temporarily short."""

    retryable = True


class UltravoxAuthError(UltravoxHTTPError):
    """401 or 403: the API key is wrong or lacks permission."""


class UltravoxRequestError(UltravoxHTTPError):
    """Another 4xx: the request body or agent id is wrong; repeating it cannot help."""


class UltravoxBadResponse(UltravoxError):
    """Ultravox answered with success but without what we need (a JSON object; for a created
    call, a `joinUrl`)."""


@dataclass(frozen=True)
class CallProgress:
    """Where a call stands at Ultravox (`GET /calls/{id}`): when it was joined and when it
    ended (ISO-8601 times, None while that has not happened), and why it ended."""

    call_id: str
    joined: str | None
    ended: str | None
    end_reason: str | None


@dataclass(frozen=True)
class UltravoxCall:
    """A created Ultravox call: what the provider needs to stream to it."""

    call_id: str
    join_url: str
    raw: dict[str, Any]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now; it may be a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_for(response: httpx.Response) -> UltravoxHTTPError:
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    body = response.text
    if status == 429:
        return UltravoxRateLimited(status, body, retry_after)
    if status in RETRYABLE_STATUSES or status >= 500:
        cls = UltravoxUnavailable if status in RETRYABLE_STATUSES else UltravoxRequestError
        return cls(status, body, retry_after)
    if status in (401, 403):
        return UltravoxAuthError(status, body)
    return UltravoxRequestError(status, body)


class UltravoxClient:
    """Creates, reads and ends Ultravox calls, sending httpx requests through one shared
    transport (connection reuse).

    Requests go straight to the transport, not through an `httpx.AsyncClient`: the client's
    layers (URL merging, cookies, auth and redirect flows) cost a webhook more CPU than the
    request itself (docs/benchmarks.md), and Ultravox's API needs none of them.

    Every request runs against a deadline that covers all its attempts and waits. Those that
    retry (creating a call, reading its progress, hanging up) back off exponentially with
    jitter, or by `Retry-After` when Ultravox gives one, and stop early when the next attempt
    could not start before the deadline; the others make one attempt.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        api_url: str,
        api_key: str,
        deadline_seconds: float,
        backoff_base: float = 0.2,
        backoff_max: float = 2.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport
        self._api_url = api_url.rstrip("/")
        headers = {
            "X-API-Key": api_key,
            "Accept": "application/json",
            "Accept-Encoding": ", ".join(ACCEPTED_ENCODINGS),  # what the transport decodes
        }
        self._headers = httpx.Headers(headers)
        # What httpx's `json=` makes of them, in its order; only Content-Length changes.
        host = _url(self._api_url).netloc.decode("ascii")
        self._json_headers = httpx.Headers(
            {"Host": host, **headers, "Content-Length": "0", "Content-Type": "application/json"}
        )
        self._deadline_seconds = deadline_seconds
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep

    async def create_call(self, body: dict[str, Any]) -> UltravoxCall:
        """Start a call from an inline definition (`POST /calls`)."""
        return await self._create("/calls", body)

    async def create_agent_call(self, agent_id: str, body: dict[str, Any]) -> UltravoxCall:
        """Start a call from a saved agent (`POST /agents/{agent_id}/calls`)."""
        # Quoted: an id is one path segment, whatever a routes file or API client put in it.
        return await self._create(f"/agents/{quote(agent_id, safe='')}/calls", body)

    async def hang_up(self, call_id: str, message: str = "") -> None:
        """End a live call as its agent would, after saying `message` (`POST
        /calls/{call_id}/send_data_message`, `hang_up`); the call keeps its messages, recording
        and summary. `UltravoxRequestError` 422 when the call is not live: not joined yet, or
        over."""
        body = {"type": "hang_up", "message": message}
        path = f"/calls/{quote(call_id, safe='')}/send_data_message"
        await self._call("POST", path, body, ok=(200, 202, 204), retry=True)

    async def call_progress(self, call_id: str) -> CallProgress:
        """Whether a call was joined and whether it has ended (`GET /calls/{call_id}`)."""
        path = f"/calls/{quote(call_id, safe='')}"
        return _parse_progress(await self._call("GET", path, ok=(200,), retry=True))

    async def delete_call(self, call_id: str) -> None:
        """End and delete a call (`DELETE /calls/{call_id}`), such as one nobody will join.

        One attempt within the deadline: a call left behind still ends at its `joinTimeout`."""
        path = f"/calls/{quote(call_id, safe='')}"
        await self._call("DELETE", path, ok=(200, 202, 204), retry=False)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One request to Ultravox's API that is not a call creation (reading a transcript,
        managing webhooks): one attempt within the deadline, the JSON answer or a typed error."""
        response = await self._call(method, path, json, params=params, ok=SUCCESS, retry=False)
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json decodes
            raise UltravoxBadResponse("Ultravox answered with a body that is not JSON") from None

    async def call_messages(self, call_id: str, max_pages: int = 5) -> list[dict[str, Any]]:
        """The messages of a call (`GET /calls/{id}/messages`), page after page, at most
        `max_pages` pages of 200."""
        messages: list[dict[str, Any]] = []
        params = {"pageSize": "200"}
        for _ in range(max_pages):
            page = await self.request(
                "GET", f"/calls/{quote(call_id, safe='')}/messages", params=params
            )
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise UltravoxBadResponse("Ultravox's messages answer has no results list")
            messages += [message for message in results if isinstance(message, dict)]
            cursor = _next_cursor(page.get("next"))
            if cursor is None:
                break
            params = {"pageSize": "200", "cursor": cursor}
        return messages

    async def _create(self, path: str, body: dict[str, Any]) -> UltravoxCall:
        return _parse_call(await self._call("POST", path, body, ok=(200, 201), retry=True))

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        ok: Container[int],
        retry: bool,
    ) -> httpx.Response:
        """The answer to `method path`, read to the end within the deadline; with `retry`,
        attempts are repeated while a retry can help. A typed `UltravoxError` when no attempt
        got one of the `ok` statuses."""
        deadline = time.monotonic() + self._deadline_seconds
        try:
            async with asyncio.timeout(self._deadline_seconds):
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        return await self._send(method, path, body, params, ok, deadline)
                    except UltravoxError as exc:
                        wait = self._next_wait(exc, attempt) if retry else None
                        if wait is None or wait >= deadline - time.monotonic():
                            raise
                        self._log_retry(exc, attempt, wait)
                        await self._sleep(wait)
        except TimeoutError:
            metrics.series(metrics.ULTRAVOX_RESPONSES, "timeout").inc()
            raise UltravoxTimeout(
                f"no answer from Ultravox within {self._deadline_seconds:g}s"
            ) from None

    def _next_wait(self, exc: UltravoxError, attempt: int) -> float | None:
        if not exc.retryable:
            return None
        if isinstance(exc, UltravoxHTTPError) and exc.retry_after is not None:
            return exc.retry_after
        backoff = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)

    @staticmethod
    def _log_retry(exc: UltravoxError, attempt: int, wait: float) -> None:
        logger.warning(
            "ultravox.retry",
            extra={
                "fields": {
                    "attempt": attempt,
                    "status": exc.status_code,
                    "error": type(exc).__name__,
                    "wait_s": round(wait, 3),
                }
            },
        )
        metrics.ULTRAVOX_RETRIES.inc()

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        ok: Container[int],
        deadline: float,
    ) -> httpx.Response:
        """One attempt: the answer read to the end, or the `UltravoxError` that says why not."""
        timeout = max(0.001, deadline - time.monotonic())
        url = _url(self._api_url + path)
        extensions = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }
        if body is None:
            request = httpx.Request(
                method, url, params=params, headers=self._headers, extensions=extensions
            )
        else:
            # The request `json=body` builds, without httpx re-reading its headers to frame it.
            content = _JSON.encode(body).encode()
            request = httpx.Request(
                method,
                url,
                params=params,
                headers=self._json_headers,
                stream=httpx.ByteStream(content),
                extensions=extensions,
            )
            request.headers["Content-Length"] = str(len(content))
            request.read()
        started = time.perf_counter()
        try:
            response = await self._transport.handle_async_request(request)
            try:
                if isinstance(response.stream, httpx.SyncByteStream):
                    # In memory already (the service's transport reads the answer whole):
                    # read without `aread`'s chain of async generators, a tenth of a webhook.
                    response.read()
                else:
                    await response.aread()
            finally:
                await response.aclose()
        except RETRYABLE_TRANSPORT_ERRORS as exc:
            metrics.series(metrics.ULTRAVOX_RESPONSES, "error").inc()
            raise UltravoxConnectionError(f"cannot reach Ultravox: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            metrics.series(metrics.ULTRAVOX_RESPONSES, "timeout").inc()
            raise UltravoxTimeout(f"Ultravox did not answer in time: {exc!r}") from exc
        except httpx.HTTPError as exc:
            metrics.series(metrics.ULTRAVOX_RESPONSES, "error").inc()
            raise UltravoxTransportError(f"request to Ultravox failed: {exc!r}") from exc
        finally:
            metrics.ULTRAVOX_REQUEST_SECONDS.observe(time.perf_counter() - started)
        response.request = request
        metrics.series(metrics.ULTRAVOX_RESPONSES, str(response.status_code)).inc()
        if response.status_code not in ok:
            raise _error_for(response)
        return response


@functools.lru_cache(maxsize=256)
def _url(url: str) -> httpx.URL:
    """`url` parsed once: the paths of creating calls repeat on every webhook."""
    return httpx.URL(url)


def _next_cursor(next_url: Any) -> str | None:
    """The `cursor` of a paginated answer's `next` URL."""
    if not isinstance(next_url, str) or not next_url:
        return None
    values = httpx.URL(next_url).params.get_list("cursor")
    return values[0] if values else None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json decodes
        raise UltravoxBadResponse("Ultravox answered with a body that is not JSON") from None
    if not isinstance(data, dict):
        raise UltravoxBadResponse("Ultravox answered with JSON that is not an object")
    return data


def _parse_progress(response: httpx.Response) -> CallProgress:
    data = _json_object(response)

    def moment(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return CallProgress(
        call_id=str(data.get("callId") or ""),
        joined=moment("joined"),
        ended=moment("ended"),
        end_reason=moment("endReason"),
    )


def _parse_call(response: httpx.Response) -> UltravoxCall:
    data = _json_object(response)
    join_url = data.get("joinUrl")
    if not isinstance(join_url, str) or not join_url.startswith(("wss://", "ws://")):
        raise UltravoxBadResponse(f"Ultravox created call {data.get('callId')} without a joinUrl")
    return UltravoxCall(call_id=str(data.get("callId") or ""), join_url=join_url, raw=data)
