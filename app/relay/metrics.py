"""Relay metrics, in the default prometheus registry (served by the app's /metrics)."""

from prometheus_client import Counter, Gauge

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
