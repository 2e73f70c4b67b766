"""Vonage: answer webhooks signed with a JWT, the call's audio relayed over a media socket, and
transfers through the Voice API."""

from app.providers.spec import ProviderSpec
from app.providers.vonage.adapter import VonageAdapter
from app.providers.vonage.options import VonageOptions
from app.providers.vonage.transfer import VonageTransfer

SPEC = ProviderSpec("vonage", VonageOptions, adapter=VonageAdapter, transfer=VonageTransfer)
