"""Telephony providers: one package each, and the registry below, the one list of them.

Adding a provider means writing its package (`app/providers/<name>/`, whose `SPEC` says what it
offers) and adding it to `PROVIDERS`. Everything that enumerates providers (the settings, the
webhook and media routes, readiness, routing's provider names, `simulate`, `call`, the start-up
hint) reads these tuples.
"""

from app.providers import asterisk, plivo, telnyx, twilio, vonage
from app.providers.base import ProviderAdapter
from app.providers.dialing import Dialer
from app.providers.media import MediaEndpoint
from app.providers.simulator import Simulator
from app.providers.spec import ProviderSpec
from app.settings import ServiceSettings
from app.store import MemoryStore, Store

PROVIDERS: tuple[ProviderSpec, ...] = (
    twilio.SPEC,
    telnyx.SPEC,
    plivo.SPEC,
    vonage.SPEC,
    asterisk.SPEC,
)

PROVIDER_NAMES = tuple(spec.name for spec in PROVIDERS)
ADAPTERS: tuple[type[ProviderAdapter], ...] = tuple(
    spec.adapter for spec in PROVIDERS if spec.adapter is not None
)
# Providers with a media socket but no webhook (the PBX announces the call on the socket).
MEDIA_ONLY_ENDPOINTS: tuple[type[MediaEndpoint], ...] = tuple(
    spec.media_endpoint for spec in PROVIDERS if spec.media_endpoint is not None
)


def build_adapters(
    settings: ServiceSettings, store: Store | None = None
) -> dict[str, ProviderAdapter]:
    """One adapter per registered provider, keyed by the name used in its URLs. `store` (the app's
    shared one) holds sessions between a relayed provider's webhook and its media socket, and
    the signatures a provider holds to one call."""
    store = store if store is not None else MemoryStore()
    return {cls.name: cls.build(settings, store) for cls in ADAPTERS}


def _no_provider_hint() -> str:
    *others, last = [hint for spec in PROVIDERS if (hint := spec.setup_hint) is not None]
    return f"no provider can take calls: set {', '.join(others)} or {last}"


# What to set so that some provider's calls can be taken, for start-up and check-config.
NO_PROVIDER_HINT = _no_provider_hint()


def providers_taking_calls(
    settings: ServiceSettings, adapters: dict[str, ProviderAdapter]
) -> list[str]:
    """The providers whose calls these settings let the service take: webhook providers with
    their secret (or signatures off), and media-only ones with theirs (Asterisk's token)."""
    ready = sorted(name for name, adapter in adapters.items() if adapter.ready)
    return ready + [make.name for make in MEDIA_ONLY_ENDPOINTS if make(settings).ready]


def build_media_endpoints(
    settings: ServiceSettings, adapters: dict[str, ProviderAdapter]
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


# What `ultravox-bridge simulate` sends for each provider that has a simulator.
SIMULATORS: dict[str, type[Simulator]] = {
    spec.name: spec.simulator for spec in PROVIDERS if spec.simulator is not None
}

# Outbound calling: the providers that can place calls. Each dialer imports its heavy SDK client
# only when it is built, which happens only when outbound calling is configured.
DIALERS: tuple[type[Dialer], ...] = tuple(
    spec.dialer for spec in PROVIDERS if spec.dialer is not None
)
