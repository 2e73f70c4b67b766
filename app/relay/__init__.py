"""The WebSocket medium: the service carries a call's audio itself, between a platform's media
socket (Vonage, Asterisk) and the Ultravox call's `joinUrl` socket, for platforms Ultravox does
not speak to natively."""
