"""Learner worker settings (`ANYTIME_LEARNER_` prefix; the Redis URL is the shared `ANYTIME_REDIS_URL`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings


class LearnerSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_LEARNER_", extra="ignore", frozen=True)

    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', …")
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads on the CPU.")
    max_learners: int = Field(
        default=1,
        ge=1,
        description="Runs whose model + optimizer stay loaded (the embedded stack uses 2; mind GPU memory).",
    )
    checkpoint_verify: Literal["size", "sha256"] = Field(
        default="sha256", description="How a checkpoint is checked before the learner loads it."
    )
    world_size: int = Field(
        default=1,
        ge=1,
        description="Data-parallel learner processes: the worker is rank 0 and starts the others as its "
        "children (services.learner.group); on CUDA rank r trains on the device's index + r. 1: one process.",
    )
    group_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="How long a rank of the learner group waits in a collective, or rank 0 for a "
        "follower's report, before the group is declared failed (and restarted by the next task).",
    )
