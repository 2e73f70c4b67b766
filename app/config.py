"""The service's whole configuration: its own settings (app/settings.py) and every registered
provider's options (app/providers/<name>/options.py) in one validated `Settings` object, read
once at start-up from the environment and `.env`."""

from typing import Any

from pydantic import ValidationError

from app.providers import PROVIDER_NAMES, PROVIDERS
from app.settings import ConfigError, ServiceSettings, describe_validation_error


# The bases come from the registry, which a type checker cannot follow: the rest of the code
# types settings as ServiceSettings, and a provider reads its fields with `ProviderOptions.of`.
class Settings(ServiceSettings, *(spec.options for spec in PROVIDERS)):  # type: ignore[misc]
    """Every setting of the service, flat: the service's own and each provider's. Field names
    map to upper-case environment variables."""

    provider_names = PROVIDER_NAMES


def load_settings(**overrides: Any) -> ServiceSettings:
    """Read and validate the settings, turning pydantic's errors into one readable message.
    Typed as the service's own settings, which a type checker can follow; provider code reads
    its options with `ProviderOptions.of`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
