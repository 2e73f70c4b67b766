"""Relay metrics, in the default prometheus registry (served by the app's /metrics).

What happens to every frame (frames relayed, each paced frame's lateness) is counted by each relay
in plain numbers (`FrameCounts`) and added to the metrics about once a second: the client
library takes a lock and five to ten Python calls per increment or observation (in multi-worker
mode a write to a shared file too), which, at 100 frames a second a call, made the metrics a good
part of the relay's own work per frame."""

from bisect import bisect_left

from prometheus_client import Counter, Gauge, Histogram

LIVE_RELAYS = Gauge(
    "bridge_relay_live", "Calls whose audio this worker is relaying now.", ["provider"]
)
FRAMES = Counter(
    "bridge_relay_frames_total",
    "Audio messages relayed: to_ultravox (caller audio), to_platform (agent audio).",
    ["provider", "direction"],
)
CLEARS = Counter(
    "bridge_relay_clears_total",
    "Agent audio flushed on Ultravox's playback_clear_buffer (the caller interrupted).",
    ["provider"],
)
UNDERRUNS = Counter(
    "bridge_relay_underruns_total",
    "Frames the agent's audio filled a frame time late (it arrived slower than real time).",
    ["provider"],
)
RELAYS_ENDED = Counter(
    "bridge_relay_ended_total",
    "Relays ended, by who ended them: caller, agent or error.",
    ["provider", "ended_by"],
)
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5)
FRAME_LATENESS = Histogram(
    "bridge_relay_frame_lateness_seconds",
    "How long after its 20 ms grid point each paced agent frame left (worker load shows here).",
    ["provider"],
    buckets=LATENESS_BUCKETS,
)


class FrameCounts:
    """One relay's per-frame counts, kept until `publish` adds them to the metrics."""

    def __init__(self, provider: str) -> None:
        self.to_ultravox = 0  # caller audio messages relayed since the last publish
        # Paced frames by lateness bucket (the last one past every bound), and their sum.
        self._lateness = [0] * (len(LATENESS_BUCKETS) + 1)
        self._lateness_sum = 0.0
        self._to_platform_published = 0
        self._to_ultravox_metric = FRAMES.labels(provider, "to_ultravox")
        self._to_platform_metric = FRAMES.labels(provider, "to_platform")
        self._lateness_metric = FRAME_LATENESS.labels(provider)

    def observe_lateness(self, seconds: float) -> None:
        """A paced frame left `seconds` after its grid point (a bucket takes what is at most
        its bound, as the histogram's own `observe` counts)."""
        self._lateness[bisect_left(LATENESS_BUCKETS, seconds)] += 1
        self._lateness_sum += seconds

    def publish(self, to_platform: int) -> None:
        """Add what was counted since the last call to the metrics; `to_platform` is the
        number of agent audio messages sent so far."""
        if self.to_ultravox:
            self._to_ultravox_metric.inc(self.to_ultravox)
            self.to_ultravox = 0
        if to_platform > self._to_platform_published:
            self._to_platform_metric.inc(to_platform - self._to_platform_published)
            self._to_platform_published = to_platform
        if any(self._lateness):
            # The histogram has no call taking many observations at once: its bucket and sum
            # values are what `observe` increments.
            metric = self._lateness_metric
            for bucket, count in enumerate(self._lateness):
                if count:
                    metric._buckets[bucket].inc(count)
                    self._lateness[bucket] = 0
            metric._sum.inc(self._lateness_sum)
            self._lateness_sum = 0.0
