"""A closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections each send the next
prepared request as soon as the previous answer arrived, and every request's latency is kept.

Requests are prepared (and signed) before the clock starts, and the client does no more than
write bytes and read one Content-Length answer, so that the generator costs little next to what
it measures.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """The latency below which `fraction` of the requests finished (nearest rank)."""
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
        return ordered[rank] * 1000


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].split(b"\r\n")
        length = None
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            self._fail(ConnectionError("answer without Content-Length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((int(head[0].split(b" ", 2)[1]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection closed: {exc!r}"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return connection


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    check: Callable[[int, bytes], str | None],
    max_seconds: float,
    ramp_seconds: float = 0.0,
) -> LoadResult:
    """Send every request (or stop after `max_seconds`), `concurrency` at a time. `check` names
    what is wrong with an answer, or returns None when it is the expected one.

    The connections start one after another over `ramp_seconds`. Started together against a
    server with a fixed delay they would stay in lockstep, every answer arriving in waves of
    `concurrency` at once; real calls arrive spread out."""
    pending = deque(requests)
    result = LoadResult()
    connections = [await _connect(host, port) for _ in range(concurrency)]
    stop_at = time.perf_counter() + max_seconds

    async def worker(connection: _Connection, start_after: float) -> None:
        await asyncio.sleep(start_after)
        while pending and time.perf_counter() < stop_at:
            raw = pending.popleft()
            started = time.perf_counter()
            try:
                status, body = await connection.request(raw)
            except ConnectionError:
                result.failures["connection lost"] = result.failures.get("connection lost", 0) + 1
                connection.close()
                connection = await _connect(host, port)
                continue
            result.latencies.append(time.perf_counter() - started)
            problem = check(status, body)
            if problem is not None:
                result.failures[problem] = result.failures.get(problem, 0) + 1
        connection.close()

    started = time.perf_counter()
    step = ramp_seconds / concurrency
    await asyncio.gather(*(worker(c, n * step) for n, c in enumerate(connections)))
    result.elapsed = time.perf_counter() - started
    return result
