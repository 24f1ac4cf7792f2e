"""Loading a served model: its engine is started by the engines' factory (`services.engines.factory`), so
torch, transformers and vLLM are imported only when a model is first asked for (the API itself imports
without them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anytime.model_facts import ModelFacts
from services.api.inference.rounds import RoundBatcher
from services.api.settings import ApiSettings
from services.engines.factory import make_engine
from services.engines.latency_engine import DEFAULT_DECODE_STEP_S, DEFAULT_PREFILL_TOKEN_S
from services.engines.seam import DEFAULT_MAX_ROWS, Engine


@dataclass(frozen=True)
class ServingEngineSettings:
    """What the factory starts a served model's engine with (its `EngineSettings`): the API's vLLM memory
    share and context length; everything else as each engine has it by default."""

    vllm_gpu_memory_utilization: float
    vllm_max_model_len: int | None
    max_rows: int = DEFAULT_MAX_ROWS
    vllm_dtype: str = "auto"
    vllm_enforce_eager: bool = False
    vllm_block_size: int | None = None
    vllm_cpu_kvcache_space_gib: int | None = None
    seed: int = 0
    latency_decode_step_s: float = DEFAULT_DECODE_STEP_S
    latency_prefill_token_s: float = DEFAULT_PREFILL_TOKEN_S

    @classmethod
    def from_api(cls, settings: ApiSettings) -> ServingEngineSettings:
        return cls(
            vllm_gpu_memory_utilization=settings.inference_vllm_gpu_memory_utilization,
            vllm_max_model_len=settings.inference_vllm_max_model_len,
        )


@dataclass
class ServedModel:
    """An engine, the round thread in front of it, and what requests are checked against."""

    path: str
    engine: Engine
    batcher: RoundBatcher
    context_length: int  # the most tokens of prompt + thinking + inserted + answer

    @property
    def facts(self) -> ModelFacts:
        return self.engine.facts

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def close(self) -> None:
        self.batcher.close()
        self.engine.close()


def load_served_model(path: str, settings: ApiSettings) -> ServedModel:
    """Load `path` (a Hugging Face model folder) on the configured engine; blocking (minutes for vLLM)."""
    kind = settings.inference_engine
    engine = make_engine(kind, Path(path), ServingEngineSettings.from_api(settings))
    batcher = RoundBatcher(engine, settings.inference_batch_wait_ms / 1000, name=Path(path).name)
    return ServedModel(path, engine, batcher, context_length(engine, kind))


def context_length(engine: Engine, kind: str) -> int:
    """The most tokens one sequence may hold: vLLM's `max_model_len`, else the model's positions."""
    started: Any = engine  # the seam does not say; each engine knows it its own way
    if kind == "vllm":
        return int(started.llm.llm_engine.model_config.max_model_len)
    return int(started.model.config.max_position_embeddings)
