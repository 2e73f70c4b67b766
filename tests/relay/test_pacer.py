"""The pacer on a clock the test drives: exact frame sizes, a drift-free 20 ms grid, no bursts."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from app.relay.audio import FrameQueue, frame_bytes
from app.relay.pacer import FlowSender, PacedSender
from app.relay.platform import PlatformClosed
from tests.relay.fakes import ManualClock, ManualTimer

FRAME = frame_bytes(16000)


class Sink:
    """The platform side: when each frame arrived, on the manual clock, and whether it was sent
    from the pacer's timer (`send_now`) or its task (`send`)."""

    # Whether the platform takes frames from the timer (the service's own WebSocket protocol)
    # or only through the task (another server); the `both_paths` fixture runs a test each way.
    takes_now = False

    def __init__(self, clock: ManualClock, stall_on: int | None = None, stall: float = 0.0):
        self.clock = clock
        self.sent: list[tuple[float, bytes]] = []
        self.paths: list[str] = []
        self.stall_on = stall_on
        self.stall = stall

    async def send(self, frame: bytes) -> None:
        self._record(frame, "task")

    def send_now(self, frame: bytes) -> bool:
        if not self.takes_now:
            return False
        self._record(frame, "timer")
        return True

    def _record(self, frame: bytes, path: str) -> None:
        self.sent.append((self.clock.now(), frame))
        self.paths.append(path)
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
    sender = PacedSender(queue, sink.send, clock, lambda: counter.append(1), send_now=sink.send_now)
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture(params=["task", "timer"])
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Frames sent by the pacer's task only, or by its timer (the service's own protocol)."""
    monkeypatch.setattr(Sink, "takes_now", request.param == "timer")
    return str(request.param)


def test_frame_sizes_follow_the_sample_rate() -> None:
    assert frame_bytes(16000) == 640
    assert frame_bytes(8000) == 320


@pytest.mark.usefixtures("both_paths")
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


async def test_ten_seconds_of_audio_keep_the_20ms_grid_without_drift(both_paths: str) -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    clock.time = 100.0
    async with pacing(queue, sink, clock):
        queue.push(bytes(640 * 500))  # Ultravox sends 10 s at once, far ahead of real time
        await clock.advance(9.0)
        assert len(sink.sent) == 451  # no burst: only what is due has gone
        await clock.advance(2.0)
    assert sink.times == [round(100.0 + n * 0.02, 9) for n in range(500)]
    assert sink.paths == [both_paths] * 500


async def test_a_frame_the_platform_cannot_take_at_once_goes_through_the_task_in_its_turn() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    sink.takes_now = True
    refused: list[bytes] = []

    def send_now(frame: bytes) -> bool:
        if frame[0] == 3 and not refused:  # the socket is busy (a clear, a full buffer)
            refused.append(frame)
            return False
        return sink.send_now(frame)

    lateness: list[float] = []
    sender = PacedSender(queue, sink.send, clock, on_lateness=lateness.append, send_now=send_now)
    task = asyncio.create_task(sender.run())
    for n in range(6):
        queue.push(bytes([n]) * 640)
    await clock.advance(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [frame[0] for _, frame in sink.sent] == [0, 1, 2, 3, 4, 5]
    assert sink.paths == ["timer", "timer", "timer", "task", "timer", "timer"]
    assert sink.times == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1]
    assert sender.sent == 6 and not sender.holding
    assert lateness == [0.0] * 6


async def test_a_frame_taken_before_an_interruption_is_not_played_after_it() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    sink.takes_now = True

    def send_now(frame: bytes) -> bool:
        if frame[0] == 2:
            # The socket is busy sending the clear for an interruption that has just emptied
            # the queue: this frame, taken before it, must not follow the clear out.
            queue.clear()
            return False
        return sink.send_now(frame)

    sender = PacedSender(queue, sink.send, clock, send_now=send_now)
    task = asyncio.create_task(sender.run())
    for n in range(5):
        queue.push(bytes([n]) * 640)
    await clock.advance(0.1)
    assert not sender.holding
    queue.push(bytes([9]) * 640)  # the agent's next words
    await clock.advance(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [frame[0] for _, frame in sink.sent] == [0, 1, 9]
    assert sink.times == [0.0, 0.02, 0.1]


async def test_a_platform_gone_when_the_timer_sends_ends_the_pacer() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)

    def send_now(frame: bytes) -> bool:
        raise PlatformClosed("closed with code 1006")

    sender = PacedSender(queue, sink.send, clock, send_now=send_now)
    task = asyncio.create_task(sender.run())
    queue.push(bytes(640 * 3))
    await clock.advance(0.1)
    assert task.done()
    with pytest.raises(PlatformClosed, match="1006"):
        await task
    assert sink.sent == [] and sender.sent == 0


@pytest.mark.usefixtures("both_paths")
async def test_audio_arriving_in_real_time_stays_on_the_grid() -> None:
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    async with pacing(queue, sink, clock):
        for _ in range(50):
            queue.push(bytes(1280))  # 40 ms chunks every 40 ms, just in time
            await clock.advance(0.04)
    assert sink.times == [round(n * 0.02, 9) for n in range(100)]


@pytest.mark.usefixtures("both_paths")
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


@pytest.mark.usefixtures("both_paths")
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


@pytest.mark.usefixtures("both_paths")
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


@pytest.mark.usefixtures("both_paths")
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


async def test_flow_sender_drops_audio_taken_before_an_interruption_it_held_through_xoff() -> None:
    # A part-frame waits a frame time for the rest; what is then taken waits for the platform to
    # say XON. An interruption meanwhile empties the queue and flushes the platform's: the
    # audio taken before it must not be played after the flush.
    clock, queue = ManualClock(), FrameQueue(FRAME)
    sent: list[bytes] = []
    open_ = asyncio.Event()
    open_.set()

    async def send(chunk: bytes) -> None:
        sent.append(chunk)

    sender = FlowSender(queue, send, clock, open_.wait, max_message_bytes=640 * 10)
    task = asyncio.create_task(sender.run())
    queue.push(b"\x01" * 100)  # less than a frame: the sender waits a frame time for the rest
    await clock.advance(0.01)
    queue.push(b"\x01" * 1180)
    open_.clear()  # MEDIA_XOFF
    await clock.advance(0.02)
    assert sender.holding and sent == []  # two frames taken, waiting for XON
    queue.clear()  # playback_clear_buffer: FLUSH_MEDIA goes out
    open_.set()  # MEDIA_XON
    await clock.advance(0.02)
    assert sent == [] and not sender.holding
    queue.push(b"\x02" * 640)  # the agent's next words
    await clock.advance(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == [b"\x02" * 640]


class LateClock(ManualClock):
    """A clock whose timers run 3 ms late, as a busy worker's do."""

    def fire(self, timer: ManualTimer) -> None:
        self.time += 0.003
        super().fire(timer)


@pytest.mark.usefixtures("both_paths")
async def test_each_frame_reports_how_late_it_left_its_grid_point() -> None:
    clock, queue = LateClock(), FrameQueue(FRAME)
    sink = Sink(clock)
    lateness: list[float] = []
    sender = PacedSender(
        queue, sink.send, clock, on_lateness=lateness.append, send_now=sink.send_now
    )
    task = asyncio.create_task(sender.run())
    queue.push(bytes(640 * 4))
    await clock.advance(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [round(seconds, 9) for seconds in lateness] == [0.0, 0.003, 0.003, 0.003]
    # Lateness never accumulates: each frame is due at its own grid point.
    assert sink.times == [0.0, 0.023, 0.043, 0.063]
