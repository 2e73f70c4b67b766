"""Asterisk: a PBX's chan_websocket media socket, relayed; no webhook."""

from app.providers.asterisk.endpoint import AsteriskEndpoint
from app.providers.asterisk.options import AsteriskOptions
from app.providers.spec import ProviderSpec

SPEC = ProviderSpec("asterisk", AsteriskOptions, media_endpoint=AsteriskEndpoint)
