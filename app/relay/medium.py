"""The Ultravox medium for relayed calls."""

from typing import Any

# With a large client buffer Ultravox sends agent audio ahead of real time and relies on
# playback_clear_buffer for interruptions, which the relay implements; Ultravox's advice.
CLIENT_BUFFER_MS = 30000


def server_websocket_medium(sample_rate: int, media_idle_timeout: str | None) -> dict[str, Any]:
    """`serverWebSocket` at the platform's own rate both ways, so nothing is resampled.
    `media_idle_timeout` (a duration such as "45s"; None leaves it out) lets Ultravox end a call
    whose caller audio stopped arriving (a dead platform socket)."""
    medium: dict[str, Any] = {
        "inputSampleRate": sample_rate,
        "outputSampleRate": sample_rate,
        "clientBufferSizeMs": CLIENT_BUFFER_MS,
    }
    if media_idle_timeout is not None:
        medium["mediaIdleTimeout"] = media_idle_timeout
    return {"serverWebSocket": medium}
