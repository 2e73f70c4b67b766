"""Relay metrics, in the default prometheus registry (served by the app's /metrics)."""

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
FRAME_LATENESS = Histogram(
    "bridge_relay_frame_lateness_seconds",
    "How long after its 20 ms grid point each paced agent frame left (worker load shows here).",
    ["provider"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5),
)
