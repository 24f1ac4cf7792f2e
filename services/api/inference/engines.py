"""Loading a served model: the only inference module that imports torch, transformers or vLLM, and
only when a model is first asked for (the API itself imports without them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anytime.model_facts import ModelFacts
from services.api.inference.rounds import RoundBatcher
from services.api.settings import ApiSettings
from services.engines.seam import Engine


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
    engine: Engine
    if settings.inference_engine == "vllm":
        from services.engines.vllm_engine import VllmEngine, VllmOptions

        vllm = VllmEngine(
            path,
            VllmOptions(
                gpu_memory_utilization=settings.inference_vllm_gpu_memory_utilization,
                max_model_len=settings.inference_vllm_max_model_len,
            ),
        )
        engine, context = vllm, int(vllm.llm.llm_engine.model_config.max_model_len)
    else:
        from services.engines.transformers_engine import TransformersEngine

        local = TransformersEngine.from_model_dir(Path(path))
        config: Any = local.model.config
        engine, context = local, int(config.max_position_embeddings)
    batcher = RoundBatcher(engine, settings.inference_batch_wait_ms / 1000, name=Path(path).name)
    return ServedModel(path, engine, batcher, context)
