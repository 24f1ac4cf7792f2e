"""Verifier settings (`ANYTIME_VERIFIER_` prefix)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings


class VerifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_VERIFIER_", extra="ignore", frozen=True)

    timeout_seconds: float = Field(default=10.0, gt=0, description="Hard wall-clock limit per graded item.")
    workers: int = Field(default=2, ge=1)
