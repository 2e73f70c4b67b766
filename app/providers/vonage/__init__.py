"""Vonage: answer webhooks signed with a JWT, the call's audio relayed over a media socket."""

from app.providers.spec import ProviderSpec
from app.providers.vonage.adapter import VonageAdapter
from app.providers.vonage.options import VonageOptions

SPEC = ProviderSpec("vonage", VonageOptions, adapter=VonageAdapter)
