"""A generation engine that computes nothing and takes the time a batched GPU engine would: benchmarks.

Simplifications first. Tokens are drawn from a seeded RNG, not a model: a request's sample depends only
on (seed, request key, sample index) — or on the prompt alone when sampling greedily — so results are
reproducible and independent of batching and scheduling. Time is a latency model of an engine with
continuous batching (vLLM's scheduler, roughly): every step admits waiting requests first come, first
served while their rows fit in `max_rows`, prefills their prompts (`prefill_token_s` per prompt token not
already in the prefix cache, which holds the prompts and, for requests with follow-ups, the finished
sequences of this call), then decodes one token for every running row (`decode_step_s`, whatever the
batch size up to `max_rows`). A request's `follow_up` runs as soon as its last sample is done, and what it
returns joins the batch at the next step, as the seam asks.

What a sample looks like, from the request's stop ids (the model facts come from the tokenizer):
- a thought (`</think>` is a stop id): a `length_share` of samples run to `max_tokens`; the others stop
  at a length uniform in 1..max_tokens, on `</think>` or, for an `eos_share` of them, on EOS;
- anything else (summaries, answers): a `length_share` run to `max_tokens`, the others stop on their
  first stop id, and an `answer_share` of those write `\\boxed{d}` (a random digit, tokenized by the
  tokenizer) before it, so some summaries parse and a few are right; the rest is unparseable.
Every other token is an ordinary vocabulary token (never a special token or a think marker), and each
carries a random log-prob in (-6.3, 0).

Pacing (`Pacer`): each step ends its modelled time after the previous one, so the engine's own Python work
(sampling, follow-ups) runs inside a step's modelled time, as a GPU engine's host work overlaps its
kernels; only a step whose host work takes longer than its model takes longer. `clock` and `sleep` are
injectable: a fake clock that advances only when slept makes the modelled time exact in tests.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from services.engines.seam import FollowUp, GenerationRequest, Sample, check_unique_keys

DEFAULT_DECODE_STEP_S = 0.004
DEFAULT_PREFILL_TOKEN_S = 0.00002
PREFIX_BLOCK_TOKENS = 16  # the prefix cache's granularity, as vLLM's KV blocks


@dataclass(frozen=True)
class LatencyModel:
    """The modelled engine: timings and the shape of what it writes (shares are probabilities)."""

    decode_step_s: float = DEFAULT_DECODE_STEP_S
    prefill_token_s: float = DEFAULT_PREFILL_TOKEN_S
    max_rows: int = 256
    length_share: float = 0.2
    eos_share: float = 0.1
    answer_share: float = 0.5

    def __post_init__(self) -> None:
        if self.decode_step_s < 0 or self.prefill_token_s < 0:
            raise ValueError(
                f"latencies must be >= 0 s; got decode_step_s={self.decode_step_s}, "
                f"prefill_token_s={self.prefill_token_s}"
            )
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1; got {self.max_rows}")
        for name in ("length_share", "eos_share", "answer_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1]; got {getattr(self, name)}")


class Pacer:
    """Sleeps so that each step ends its modelled time after the previous one ended (the first after
    `start`): the host work between steps counts towards the next step's time instead of adding to it,
    and a step whose host work took longer than its model is not made up later."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._deadline = clock()

    def spend(self, seconds: float) -> None:
        self._deadline += seconds
        now = self._clock()
        if self._deadline > now:
            self._sleep(self._deadline - now)
        else:
            self._deadline = now


class PrefixCache:
    """Which full blocks of token ids the engine holds (chained block hashes, as vLLM's prefix caching)."""

    def __init__(self, block: int = PREFIX_BLOCK_TOKENS) -> None:
        self.block = block
        self._blocks: set[int] = set()

    def _hashes(self, ids: Sequence[int]) -> Iterable[int]:
        chained = 0
        for start in range(0, len(ids) - self.block + 1, self.block):
            chained = hash((chained, tuple(ids[start : start + self.block])))
            yield chained

    def new_tokens(self, ids: Sequence[int]) -> int:
        """Tokens of `ids` past its longest cached prefix of whole blocks (what a prefill computes); at
        least one, as vLLM recomputes the last token of a fully cached prompt for its logits."""
        cached = 0
        for chained in self._hashes(ids):
            if chained not in self._blocks:
                break
            cached += self.block
        return max(1, len(ids) - cached)

    def add(self, ids: Sequence[int]) -> None:
        self._blocks.update(self._hashes(ids))


@dataclass
class _Running:
    """A request in the batch: its samples (drawn at admission) and how many are still decoding."""

    request: GenerationRequest
    samples: list[Sample]
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = len(self.samples)


class LatencyEngine:
    def __init__(
        self,
        tokenizer: Any,
        facts: ModelFacts,
        model: LatencyModel | None = None,
        policy_version: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tokenizer = tokenizer
        self.facts = facts
        self.model = model or LatencyModel()
        self._policy_version = policy_version
        self._clock = clock
        self._sleep = sleep
        markers = {facts.think_start_id, facts.think_end_id, facts.eos_id, facts.pad_id}
        special = set(tokenizer.all_special_ids) | markers
        ordinary = [i for i in range(len(tokenizer)) if i not in special]
        if not ordinary:
            raise ValueError("the tokenizer has no ordinary (non-special) tokens to write")
        # Indexed by 16 random bits: drawing k tokens is two C calls (the engine should cost the host as
        # little CPU as a GPU engine would). Past 65,536 ordinary tokens only the first are drawn.
        self._ordinary = [ordinary[i % len(ordinary)] for i in range(1 << 16)]
        digits = [tokenizer.encode(f"\\boxed{{{d}}}", add_special_tokens=False) for d in range(10)]
        self._answers = [tuple(ids) for ids in digits]
        self.modelled_s = 0.0  # the modelled time of everything generated so far

    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path,
        model: LatencyModel | None = None,
        fmt: SummaryFormat | None = None,
        policy_version: int = 0,
    ) -> LatencyEngine:
        """Load only the tokenizer of `model_dir` (no weights) and read the model facts from it."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        facts = ModelFacts.from_tokenizer(tokenizer, fmt or SummaryFormat())
        return cls(tokenizer, facts, model, policy_version=policy_version)

    @property
    def policy_version(self) -> int:
        return self._policy_version

    def load_weights(self, model_dir: Path, policy_version: int) -> None:
        """Nothing to load: only the version changes."""
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
        self._policy_version = policy_version

    def close(self) -> None:
        """Nothing to release."""

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingConfig,
        follow_up: FollowUp | None = None,
        seed: int = 0,
    ) -> dict[str, list[Sample]]:
        seen: set[str] = set()
        check_unique_keys(requests, seen)
        results: dict[str, list[Sample]] = {}
        waiting = deque(requests)
        running: dict[str, _Running] = {}
        rows = 0
        step = 0
        finishing: list[tuple[int, int, str]] = []  # (step it ends on, order, request key) per sample
        order = 0
        pacer = Pacer(self._clock, self._sleep)
        cache = PrefixCache()  # prefixes are shared within a call, not across calls: bounded memory
        while waiting or running:
            new_tokens = 0
            while waiting and (rows == 0 or rows + waiting[0].n <= self.model.max_rows):
                request = waiting.popleft()
                new_tokens += cache.new_tokens(request.prompt_ids)
                cache.add(request.prompt_ids)
                samples = [self._sample(request, i, sampling, seed) for i in range(request.n)]
                running[request.key] = _Running(request, samples)
                rows += request.n
                for sample in samples:
                    heapq.heappush(finishing, (step + len(sample.ids), order, request.key))
                    order += 1
            step += 1
            seconds = self.model.decode_step_s + self.model.prefill_token_s * new_tokens
            self.modelled_s += seconds
            pacer.spend(seconds)
            while finishing and finishing[0][0] <= step:
                _, _, key = heapq.heappop(finishing)
                entry = running[key]
                entry.left -= 1
                rows -= 1
                if entry.left:
                    continue
                del running[key]
                results[key] = entry.samples
                more = list(follow_up(entry.request, entry.samples)) if follow_up is not None else []
                check_unique_keys(more, seen)
                if more:  # follow-ups extend their request's sequences (a summary prompt is prompt + thought)
                    for sample in entry.samples:
                        cache.add((*entry.request.prompt_ids, *sample.ids))
                waiting.extend(more)  # behind every request already waiting
        return results

    def _sample(self, request: GenerationRequest, index: int, sampling: SamplingConfig, seed: int) -> Sample:
        """Sample `index` of `request`, from an RNG of its own (see the module docstring)."""
        if sampling.greedy:
            rng = random.Random("greedy/" + ",".join(map(str, request.prompt_ids)))
        else:
            rng = random.Random(f"{seed}/{request.key}/{index}")
        model, facts = self.model, self.facts
        limit = request.max_tokens
        stops = set(request.stop_ids)
        if not stops or rng.random() < model.length_share:
            return Sample(self._body(rng, limit, stops), _logprobs(rng, limit), "length")
        thought = facts.think_end_id in request.stop_ids
        if thought:
            eos = facts.eos_id in request.stop_ids and rng.random() < model.eos_share
            stop = facts.eos_id if eos else facts.think_end_id
            length = rng.randint(1, limit)
            tail: tuple[int, ...] = (stop,)
        else:
            stop = request.stop_ids[0]
            length = rng.randint(1, limit)
            answer = self._answers[rng.randrange(10)]
            if rng.random() < model.answer_share and len(answer) < limit and not stops & set(answer):
                length = max(length, len(answer) + 1)
                tail = (*answer, stop)
            else:
                tail = (stop,)
        ids = (*self._body(rng, length - len(tail), stops), *tail)
        return Sample(ids, _logprobs(rng, length), "stop")

    def _body(self, rng: random.Random, k: int, stops: set[int]) -> tuple[int, ...]:
        """`k` ordinary tokens, none of them a stop id (markers and special tokens are never drawn)."""
        ids = tuple(map(self._ordinary.__getitem__, array("H", rng.randbytes(2 * k))))
        if stops.isdisjoint(ids):
            return ids
        redrawn = list(ids)
        for i, token in enumerate(redrawn):
            while token in stops:
                token = rng.choice(self._ordinary)
            redrawn[i] = token
        return tuple(redrawn)


# log((b + 1/2) / 256) for a random byte b: log-probs in (-6.3, 0), as a uniform's log, at byte resolution.
LOGPROB_OF_BYTE = tuple(math.log((b + 0.5) / 256) for b in range(256))


def _logprobs(rng: random.Random, n: int) -> tuple[float, ...]:
    """`n` random log-probs in (-inf, 0)."""
    return tuple(map(LOGPROB_OF_BYTE.__getitem__, rng.randbytes(n)))
