"""Verifier settings (`ANYTIME_VERIFIER_` prefix; the Redis URL is the shared `ANYTIME_REDIS_URL`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings


class VerifierSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_VERIFIER_", extra="ignore", frozen=True)

    timeout_seconds: float = Field(default=10.0, gt=0, description="Hard wall-clock limit per graded item.")
    workers: int = Field(default=2, ge=1, description="Grader processes per verifier (per task process).")
    cache_size: int = Field(
        default=100_000, ge=0, description="Verdicts kept in the in-memory cache; 0 disables it."
    )
    max_answer_chars: int = Field(
        default=10_000,
        ge=1,
        description="Longer extracted answers are unparseable without grading (no real answer is this long).",
    )
