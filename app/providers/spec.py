"""What a provider package declares to the registry: its name and options, and which of the
interfaces it implements (webhook adapter, media-only endpoint, dialer, simulator)."""

from dataclasses import dataclass

from app.providers.base import ProviderAdapter
from app.providers.dialing import Dialer
from app.providers.media import MediaEndpoint
from app.providers.simulator import Simulator
from app.settings import ProviderOptions


@dataclass(frozen=True)
class ProviderSpec:
    """One provider. `name` is the first part of its URLs and the `provider` of its calls;
    `media_endpoint` is for providers with a media socket but no webhook (the PBX announces the
    call on the socket)."""

    name: str
    options: type[ProviderOptions]
    adapter: type[ProviderAdapter] | None = None
    media_endpoint: type[MediaEndpoint] | None = None
    dialer: type[Dialer] | None = None
    simulator: type[Simulator] | None = None

    @property
    def setup_hint(self) -> str | None:
        """What to set so that this provider can take calls, for the start-up hint and
        check-config; None for a provider that takes no calls."""
        takes_calls = self.adapter or self.media_endpoint
        return takes_calls.setup_hint() if takes_calls is not None else None

    def __post_init__(self) -> None:
        parts = (self.adapter, self.media_endpoint, self.dialer, self.simulator)
        for part in parts:
            if part is not None and part.name != self.name:
                raise ValueError(f"{part.__name__}.name is {part.name!r}, not {self.name!r}")
