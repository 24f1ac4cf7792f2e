"""A generation engine on Hugging Face transformers with its own decode loop (CPU, tests, small models).

Why its own loop rather than `generate`: it prefills each distinct prompt once and expands the KV cache
across that prompt's `n` samples (a summary prompt's `k·A` samples share one prefill of the whole thinking
prefix), drops finished rows from the batch as it goes, and records the raw log-prob of every sampled token.

Scheduling is by waves: a wave runs every pending request to the end; the follow-ups of its requests form
the next wave (vLLM instead adds them to its running batch, see `services.engines.vllm_engine`).
Weights are updated in place with `load_state_dict`, so a new policy costs no restart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from services.engines.seam import FollowUp, GenerationRequest, Sample, SampleFinish, check_unique_keys

DEFAULT_MAX_ROWS = 256


class TransformersEngine:
    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        facts: ModelFacts,
        policy_version: int = 0,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1; got {max_rows}")
        self.model = model
        self.tokenizer = tokenizer
        self.facts = facts
        self.max_rows = max_rows
        self._policy_version = policy_version

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, fmt: SummaryFormat | None = None, policy_version: int = 0, **kwargs: Any
    ) -> TransformersEngine:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        facts = ModelFacts.from_tokenizer(tokenizer, fmt or SummaryFormat())
        return cls(model.eval(), tokenizer, facts, policy_version=policy_version, **kwargs)

    @property
    def policy_version(self) -> int:
        return self._policy_version

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_weights(self, model_dir: Path, policy_version: int) -> None:
        """Copy the weights of `model_dir` into the served model (same architecture required)."""
        new = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        missing, unexpected = self.model.load_state_dict(new.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{model_dir} does not fit the served model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}; start a new engine for a different architecture"
            )
        self._policy_version = policy_version

    def close(self) -> None:
        """Nothing to release: the model lives in this process."""

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingConfig,
        follow_up: FollowUp | None = None,
        seed: int = 0,
    ) -> dict[str, list[Sample]]:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        seen: set[str] = set()
        check_unique_keys(requests, seen)
        results: dict[str, list[Sample]] = {}
        pending = list(requests)
        was_training = self.model.training
        self.model.eval()
        try:
            while pending:
                wave, pending = pending, []
                for chunk in self._chunks(wave):
                    samples = self._run(chunk, sampling, generator)
                    for request in chunk:
                        results[request.key] = samples[request.key]
                        if follow_up is not None:
                            more = list(follow_up(request, samples[request.key]))
                            check_unique_keys(more, seen)
                            pending.extend(more)
        finally:
            self.model.train(was_training)
        return results

    def _chunks(self, requests: Sequence[GenerationRequest]) -> Iterator[list[GenerationRequest]]:
        chunk: list[GenerationRequest] = []
        rows = 0
        for request in requests:
            if chunk and rows + request.n > self.max_rows:
                yield chunk
                chunk, rows = [], 0
            chunk.append(request)
            rows += request.n
        if chunk:
            yield chunk

    @torch.inference_mode()
    def _run(
        self, requests: Sequence[GenerationRequest], sampling: SamplingConfig, generator: torch.Generator
    ) -> dict[str, list[Sample]]:
        device = self.device
        # One prefill row per distinct prompt (G thinking requests of a problem share theirs).
        distinct: dict[tuple[int, ...], int] = {}
        for request in requests:
            distinct.setdefault(request.prompt_ids, len(distinct))
        prompts = list(distinct)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.facts.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
        )
        cache = out.past_key_values

        # Expand: row r of the decode batch is sample `sample_of[r]` of request `owner[r]`.
        prefill_row = [distinct[req.prompt_ids] for req in requests for _ in range(req.n)]
        owner = [i for i, req in enumerate(requests) for _ in range(req.n)]
        index = torch.tensor(prefill_row, dtype=torch.long, device=device)
        cache.batch_select_indices(index)
        logits = out.logits[:, -1, :].index_select(0, index)
        mask = mask.to(device).index_select(0, index)
        next_position = positions[:, -1].to(device).index_select(0, index) + 1
        max_tokens = torch.tensor([requests[o].max_tokens for o in owner], device=device)
        stop_width = max(1, max(len(r.stop_ids) for r in requests))
        stops = torch.full((len(owner), stop_width), -1, dtype=torch.long, device=device)
        for row, o in enumerate(owner):
            if requests[o].stop_ids:
                stops[row, : len(requests[o].stop_ids)] = torch.tensor(requests[o].stop_ids)

        rows = len(owner)
        ids: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        stopped = [False] * rows
        alive = torch.arange(rows, device=device)
        length = torch.zeros(rows, dtype=torch.long, device=device)
        while True:
            token, token_logprob = self._sample(logits, sampling, generator)
            for row, tok, lp in zip(alive.tolist(), token.tolist(), token_logprob.tolist(), strict=True):
                ids[row].append(tok)
                logprobs[row].append(lp)
            length += 1
            hit_stop = (stops == token[:, None]).any(-1)
            done = hit_stop | (length >= max_tokens)
            for row in alive[hit_stop].tolist():
                stopped[row] = True
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                alive, token, mask = alive[keep], token[keep], mask[keep]
                length, max_tokens, stops = length[keep], max_tokens[keep], stops[keep]
                next_position = next_position[keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = self.model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
            next_position = next_position + 1

        samples: dict[str, list[Sample]] = {req.key: [] for req in requests}
        for row, o in enumerate(owner):
            finish: SampleFinish = "stop" if stopped[row] else "length"
            samples[requests[o].key].append(Sample(tuple(ids[row]), tuple(logprobs[row]), finish))
        return samples

    @staticmethod
    def _sample(
        logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token per row and its log-prob under the unmodified model. Shapes [R, V] → [R]."""
        raw = torch.log_softmax(logits.float(), dim=-1)
        if sampling.greedy:
            token = raw.argmax(dim=-1)
        else:
            scores = logits.float() / sampling.temperature
            if sampling.top_k > 0 and sampling.top_k < scores.shape[-1]:
                kth = scores.topk(sampling.top_k, dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            if sampling.top_p < 1.0:
                sorted_scores, order = scores.sort(dim=-1, descending=True)
                cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
                drop_sorted = cumulative - sorted_scores.softmax(dim=-1) >= sampling.top_p
                drop = drop_sorted.scatter(-1, order, drop_sorted)
                scores = scores.masked_fill(drop, float("-inf"))
            probs = scores.softmax(dim=-1)
            token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        return token, raw.gather(-1, token[:, None]).squeeze(-1)
