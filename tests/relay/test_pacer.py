"""The pacer on a clock the test drives: exact frame sizes, a drift-free 20 ms grid, no bursts."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from app.relay.audio import FrameQueue, frame_bytes
from app.relay.pacer import FlowSender, PacedSender
from tests.relay.fakes import ManualClock

FRAME = frame_bytes(16000)


class Sink:
    """The platform side: when each frame arrived, on the manual clock."""

    def __init__(self, clock: ManualClock, stall_on: int | None = None, stall: float = 0.0):
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []
        self.stall_on = stall_on
        self.stall = stall

    async def send(self, frame: bytes) -> None:
        self.sent.append((self.clock.now(), frame))
        if len(self.sent) == self.stall_on:
            self.clock.time += self.stall  # the worker was busy elsewhere this long

    @property
    def times(self) -> list[float]:
        return [round(at, 9) for at, _ in self.sent]


@asynccontextmanager
async def pacing(
    queue: FrameQueue, sink: Sink, clock: ManualClock, underruns: list[int] | None = None
) -> AsyncIterator[PacedSender]:
    counter = underruns if underruns is not None else []
    sender = PacedSender(queue, sink.send, clock, lambda: counter.append(1))
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_frame_sizes_follow_the_sample_rate() -> None:
    assert frame_bytes(16000) == 640
    assert frame_bytes(8000) == 320


async def test_every_frame_has_exactly_the_platform_frame_size() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    async with pacing(queue, sink, clock):
        for size in (1000, 333, 5001, 17, 2000):  # Ultravox's chunks: any size, even odd
            queue.push(b"\x01" * size)
        await clock.advance(1.0)
    assert {len(frame) for _, frame in sink.sent} == {640}
    total = 1000 + 333 + 5001 + 17 + 2000
    assert len(sink.sent) == -(-total // 640)
    # The last part-frame is padded with silence, not dropped.
    assert sink.sent[-1][1] == b"\x01" * (total % 640) + b"\x00" * (640 - total % 640)


async def test_ten_seconds_of_audio_keep_the_20ms_grid_without_drift() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    clock.time = 100.0
    async with pacing(queue, sink, clock):
        queue.push(bytes(640 * 500))  # Ultravox sends 10 s at once, far ahead of real time
        await clock.advance(9.0)
        assert len(sink.sent) == 451  # no burst: only what is due has gone
        await clock.advance(2.0)
    assert sink.times == [round(100.0 + n * 0.02, 9) for n in range(500)]


async def test_audio_arriving_in_real_time_stays_on_the_grid() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    async with pacing(queue, sink, clock):
        for _ in range(50):
            queue.push(bytes(1280))  # 40 ms chunks every 40 ms, just in time
            await clock.advance(0.04)
    assert sink.times == [round(n * 0.02, 9) for n in range(100)]


async def test_a_stalled_worker_resumes_on_the_grid_instead_of_bursting() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock, stall_on=10, stall=0.05)
    async with pacing(queue, sink, clock):
        queue.push(bytes(640 * 20))
        await clock.advance(1.0)
    times = sink.times
    assert times[:10] == [round(n * 0.02, 9) for n in range(10)]
    # Frame 10 was due at 0.20 but the worker was busy until 0.23: it goes at 0.24, the next
    # grid point, and every later frame stays on the grid.
    assert times[10:] == [round(0.24 + n * 0.02, 9) for n in range(10)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(0.02)


async def test_a_new_utterance_starts_at_once_but_never_within_a_frame_of_the_last() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    async with pacing(queue, sink, clock):
        queue.push(bytes(640))
        await clock.advance(0.005)
        queue.push(bytes(640))  # arrives 5 ms after the first frame went
        await clock.advance(0.5)
        queue.push(bytes(640))  # arrives after a pause
        await clock.advance(0.1)
    assert sink.times == [0.0, 0.02, 0.505]


async def test_audio_that_arrives_late_counts_an_underrun_and_the_end_of_speech_does_not() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink, underruns = Sink(clock), []
    async with pacing(queue, sink, clock, underruns):
        queue.push(bytes(640 + 320))
        await clock.advance(0.03)  # at 0.02 only half a frame is there
        queue.push(bytes(320 + 100))  # the rest comes late, then 100 bytes end the utterance
        await clock.advance(0.2)
    assert len(underruns) == 1
    assert sink.times == [0.0, 0.04, 0.08]


async def test_clearing_the_queue_stops_playback_at_once() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    async with pacing(queue, sink, clock):
        queue.push(bytes(640 * 100))
        await clock.advance(0.1)
        assert queue.clear() == 640 * 94
        await clock.advance(1.0)
    assert len(sink.sent) == 6


async def test_flow_sender_hands_over_whole_frames_and_waits_while_the_platform_is_full() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sent: list[bytes] = []
    open_ = asyncio.Event()

    async def send(chunk: bytes) -> None:
        sent.append(chunk)

    sender = FlowSender(queue, send, clock, open_.wait, max_message_bytes=640 * 10 + 100)
    task = asyncio.create_task(sender.run())
    queue.push(bytes(640 * 25 + 10))
    await clock.advance(0.1)
    assert sent == []  # flow control: the platform said XOFF
    open_.set()
    await clock.advance(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [len(chunk) for chunk in sent] == [6400, 6400, 3200, 640]


class LateClock(ManualClock):
    """A clock whose sleeps overrun by 3 ms, as a busy worker's do."""

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self.time:
            await super().sleep_until(deadline)
            self.time += 0.003


async def test_each_frame_reports_how_late_it_left_its_grid_point() -> None:
    clock, queue = LateClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    lateness: list[float] = []
    sender = PacedSender(queue, sink.send, clock, on_lateness=lateness.append)
    task = asyncio.create_task(sender.run())
    queue.push(bytes(640 * 4))
    await clock.advance(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [round(seconds, 9) for seconds in lateness] == [0.0, 0.003, 0.003, 0.003]
    # Lateness never accumulates: each frame is due at its own grid point.
    assert sink.times == [0.0, 0.023, 0.043, 0.063]
