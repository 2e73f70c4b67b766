"""Telephony providers. Adding one means writing its adapter module and registering it here."""

from app.providers.base import ProviderAdapter
from app.providers.dialing import Dialer
from app.providers.plivo import PlivoAdapter
from app.providers.plivo_dialer import PlivoDialer
from app.providers.plivo_simulator import PlivoSimulator
from app.providers.simulator import Simulator
from app.providers.telnyx import TelnyxAdapter
from app.providers.telnyx_dialer import TelnyxDialer
from app.providers.telnyx_simulator import TelnyxSimulator
from app.providers.twilio import TwilioAdapter
from app.providers.twilio_dialer import TwilioDialer
from app.providers.twilio_simulator import TwilioSimulator
from app.settings import Settings

ADAPTERS: tuple[type[ProviderAdapter], ...] = (TwilioAdapter, TelnyxAdapter, PlivoAdapter)


def build_adapters(settings: Settings) -> dict[str, ProviderAdapter]:
    """One adapter per registered provider, keyed by the name used in its URLs."""
    return {cls.name: cls(settings) for cls in ADAPTERS}


# What `ultravox-bridge simulate` sends for each provider: a module beside each adapter.
SIMULATORS: dict[str, type[Simulator]] = {
    cls.name: cls for cls in (TwilioSimulator, TelnyxSimulator, PlivoSimulator)
}

# Outbound calling: the providers that can place calls. Each dialer imports its heavy SDK client
# only when it is built, which happens only when outbound calling is configured.
DIALERS: tuple[type[Dialer], ...] = (TwilioDialer, TelnyxDialer, PlivoDialer)
