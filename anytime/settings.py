"""Settings: environment → one settings object per process → constructor arguments.

Shared values (Redis, database, MLflow, logging) read the `ANYTIME_` prefix; each service adds its own
fields under its own prefix (`ANYTIME_API_`, `ANYTIME_ROLLOUT_`, …) by subclassing `ServiceSettings`.
Nothing else in the code reads `os.environ`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["console", "json"]

# Every key the platform writes to Redis starts with this (trajectories, verdicts, leases, task records).
REDIS_KEY_PREFIX = "anytime"
# How long Redis keeps what a step left behind (trajectories, verdicts, task results) if nobody deletes it.
RETENTION_S = 7 * 24 * 3600


class CommonSettings(BaseSettings):
    """What every process needs to find the shared infrastructure."""

    model_config = SettingsConfigDict(env_prefix="ANYTIME_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path("build"),
        validation_alias=AliasChoices("ANYTIME_HOME"),
        description="Folder for local state (SQLite, MLflow, runs).",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANYTIME_REDIS_URL", "REDIS_URL"),
        description="Redis to use; unset means start a local redis-server (embedded default).",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANYTIME_DATABASE_URL"),
        description="SQLAlchemy URL; unset means a SQLite file in home.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANYTIME_MLFLOW_TRACKING_URI"),
        description="MLflow store or server; unset means a SQLite store in home.",
    )
    visibility_timeout_s: int = Field(
        default=60,
        ge=6,
        validation_alias=AliasChoices("ANYTIME_VISIBILITY_TIMEOUT_S"),
        description="Seconds after its worker died before a task is re-delivered to another worker "
        "(live workers keep their tasks' delivery fresh, so tasks may run longer than this).",
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("ANYTIME_LOG_LEVEL"))
    log_format: LogFormat = Field(default="console", validation_alias=AliasChoices("ANYTIME_LOG_FORMAT"))

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"log level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got {value!r}")
        return level

    def broker_url(self) -> str:
        """The Redis that carries the queues and holds trajectories and verdicts (workers need one)."""
        if not self.redis_url:
            raise ValueError(
                "workers need Redis: set ANYTIME_REDIS_URL (or REDIS_URL), e.g. redis://localhost:6379/0; "
                "`anytime up` starts a local redis-server and sets it for its workers"
            )
        return self.redis_url

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'anytime.db').resolve()}"

    @property
    def resolved_mlflow_uri(self) -> str:
        # MLflow 3 refuses a plain file store by default; a SQLite backend is the supported local store.
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"


@lru_cache(maxsize=1)
def get_common_settings() -> CommonSettings:
    """The process's settings, built once (tests call `get_common_settings.cache_clear()`)."""
    return CommonSettings()


def inherited_environment() -> dict[str, str]:
    """This process's environment as a process it starts inherits it (PATH, CUDA_VISIBLE_DEVICES, HF_HOME,
    … pass through unread), for the caller to write its settings over."""
    return dict(os.environ)
