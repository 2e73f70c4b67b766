"""Telephony providers. Adding one means writing its adapter module and registering it here."""

from app.providers.base import ProviderAdapter
from app.providers.plivo import PlivoAdapter
from app.providers.telnyx import TelnyxAdapter
from app.providers.twilio import TwilioAdapter
from app.settings import Settings

ADAPTERS: tuple[type[ProviderAdapter], ...] = (TwilioAdapter, TelnyxAdapter, PlivoAdapter)


def build_adapters(settings: Settings) -> dict[str, ProviderAdapter]:
    """One adapter per registered provider, keyed by the name used in its URLs."""
    return {cls.name: cls(settings) for cls in ADAPTERS}
