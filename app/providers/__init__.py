"""Telephony providers. Adding one means writing its adapter module and registering it here."""

from app.providers.asterisk import AsteriskEndpoint
from app.providers.base import ProviderAdapter
from app.providers.dialing import Dialer
from app.providers.media import MediaEndpoint
from app.providers.plivo import PlivoAdapter
from app.providers.plivo_dialer import PlivoDialer
from app.providers.plivo_simulator import PlivoSimulator
from app.providers.plivo_transfer import PlivoTransfer
from app.providers.simulator import Simulator
from app.providers.telnyx import TelnyxAdapter
from app.providers.telnyx_dialer import TelnyxDialer
from app.providers.telnyx_simulator import TelnyxSimulator
from app.providers.telnyx_transfer import TelnyxTransfer
from app.providers.twilio import TwilioAdapter
from app.providers.twilio_dialer import TwilioDialer
from app.providers.twilio_simulator import TwilioSimulator
from app.providers.twilio_transfer import TwilioTransfer
from app.providers.vonage import VonageAdapter
from app.settings import Settings
from app.store import MemoryStore, Store
from app.transfer.driver import TransferDriver

ADAPTERS: tuple[type[ProviderAdapter], ...] = (
    TwilioAdapter,
    TelnyxAdapter,
    PlivoAdapter,
    VonageAdapter,
)
# Providers with a media socket but no webhook (the PBX announces the call on the socket).
MEDIA_ONLY_ENDPOINTS: tuple[type[MediaEndpoint], ...] = (AsteriskEndpoint,)


def build_adapters(settings: Settings, store: Store | None = None) -> dict[str, ProviderAdapter]:
    """One adapter per registered provider, keyed by the name used in its URLs. `store` holds
    sessions between a relayed provider's webhook and its media socket (the app's shared one)."""
    store = store if store is not None else MemoryStore()
    return {cls.name: cls.build(settings, store) for cls in ADAPTERS}


def build_media_endpoints(
    settings: Settings, adapters: dict[str, ProviderAdapter]
) -> dict[str, MediaEndpoint]:
    """The media socket endpoints, keyed by provider name: the webhook adapters that relay
    media themselves, plus the media-only ones."""
    endpoints: dict[str, MediaEndpoint] = {
        name: adapter for name, adapter in adapters.items() if isinstance(adapter, MediaEndpoint)
    }
    for make in MEDIA_ONLY_ENDPOINTS:
        endpoint = make(settings)
        endpoints[endpoint.name] = endpoint
    return endpoints


# What `ultravox-bridge simulate` sends for each provider: a module beside each adapter.
SIMULATORS: dict[str, type[Simulator]] = {
    cls.name: cls for cls in (TwilioSimulator, TelnyxSimulator, PlivoSimulator)
}

# Outbound calling: the providers that can place calls. Each dialer imports its heavy SDK client
# only when it is built, which happens only when outbound calling is configured.
DIALERS: tuple[type[Dialer], ...] = (TwilioDialer, TelnyxDialer, PlivoDialer)

# Transfers to a person: the providers whose live calls the bridge can move (app/transfer/).
TRANSFER_DRIVERS: tuple[type[TransferDriver], ...] = (TwilioTransfer, TelnyxTransfer, PlivoTransfer)
