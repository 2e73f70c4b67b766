"""The secrets `simulate` signs with: each registered simulator's `secret_setting`, from the
environment or `.env`.

Deliberately not the service's `Settings`: simulating needs only the provider's secret, so it
runs on a laptop that has no Ultravox key. A comma-separated rotation list is accepted; the
first value signs.
"""

from pydantic import SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.providers import SIMULATORS


class _SecretsOnly(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


SimulatorSettings = create_model(
    "SimulatorSettings",
    __base__=_SecretsOnly,
    **{cls.secret_setting.lower(): (SecretStr | None, None) for cls in SIMULATORS.values()},  # type: ignore[call-overload]
)
