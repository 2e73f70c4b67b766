"""The Ultravox medium for relayed calls."""

from typing import Any

# With a large client buffer Ultravox sends agent audio ahead of real time and relies on
# playback_clear_buffer for interruptions, which the relay implements; Ultravox's advice.
CLIENT_BUFFER_MS = 30000
# Ultravox ends the call when no caller audio arrives for this long (a dead platform socket).
MEDIA_IDLE_TIMEOUT = "45s"


def server_websocket_medium(sample_rate: int) -> dict[str, Any]:
    """`serverWebSocket` at the platform's own rate both ways, so nothing is resampled."""
    return {
        "serverWebSocket": {
            "inputSampleRate": sample_rate,
            "outputSampleRate": sample_rate,
            "clientBufferSizeMs": CLIENT_BUFFER_MS,
            "mediaIdleTimeout": MEDIA_IDLE_TIMEOUT,
        }
    }
