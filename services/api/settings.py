"""API settings (`ANYTIME_API_` prefix) on top of the shared ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings

_PLACEHOLDER_KEYS = {"", "changeme", "change-me", "dev"}


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_API_", extra="ignore", frozen=True)

    environment: str = Field(default="development", description="development | production")
    api_key: SecretStr = Field(default=SecretStr("dev"), description="Key for mutating calls.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    readiness_timeout_s: float = Field(default=2.0, gt=0, description="Seconds /readyz waits for Redis.")

    @model_validator(mode="after")
    def _real_key_outside_development(self) -> ApiSettings:
        if self.environment != "development" and self.api_key.get_secret_value() in _PLACEHOLDER_KEYS:
            raise ValueError("ANYTIME_API_API_KEY must be set to a real secret outside development")
        return self


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
