"""Sampling parameters every engine takes, and every job that samples carries (rollout, evaluation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SamplingConfig(BaseModel):
    """Sampling parameters shared by every engine; unknown keys are errors (`extra="forbid"`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=1.0, ge=0.0, description="0 samples greedily.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, description="Keep the k likeliest tokens; 0 keeps all.")

    @model_validator(mode="after")
    def _greedy_has_no_filters(self) -> SamplingConfig:
        if self.temperature == 0.0 and (self.top_p < 1.0 or self.top_k > 0):
            raise ValueError("temperature 0 samples greedily; leave top_p at 1 and top_k at 0")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0
