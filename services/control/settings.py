"""Run driver settings (`ANYTIME_CONTROL_` prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings


class ControlSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_CONTROL_", extra="ignore", frozen=True)

    runs_root: Path | None = Field(
        default=None, description="Checkpoints go to <runs_root>/<run id>/; unset: <home>/runs."
    )
    task_timeout_s: float = Field(
        default=6 * 3600, gt=0, description="Longest wait for one rollout/verify/learn task."
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Artifact folder URI for a local MLflow store; unset: <home>/mlflow-artifacts.",
    )
    tracking: bool = Field(default=True, description="Track runs in MLflow (false: a null tracker).")
    outage_wait_s: float = Field(
        default=600, gt=0, description="How long a driver waits out Redis being away before letting go."
    )
    rescue: bool = Field(default=True, description="Sweep for runs left without a driver and queue them.")
    rescue_interval_s: float = Field(default=15, gt=0, description="Seconds between rescue sweeps.")

    @property
    def resolved_runs_root(self) -> Path:
        return (self.runs_root or self.home / "runs").resolve()

    @property
    def resolved_artifact_root(self) -> str:
        return self.mlflow_artifact_root or (self.home / "mlflow-artifacts").resolve().as_uri()
