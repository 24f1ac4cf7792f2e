"""A generation engine on Hugging Face transformers, for the CPU and for tests.

Batched, left-padded `generate`; each completion is cut at its first stop token (kept) and reports why
it ended: `think_end`, `eos` or `length`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from anytime.brpo.cuts import FinishReason
from anytime.tinymodel.facts import ModelFacts


@dataclass(frozen=True)
class Completion:
    token_ids: list[int]
    finish_reason: FinishReason


class TransformersEngine:
    def __init__(self, model: torch.nn.Module, facts: ModelFacts, batch_size: int = 64) -> None:
        self.model = model
        self.facts = facts
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        temperature: float = 0.0,
    ) -> list[Completion]:
        """One completion per prompt; greedy when `temperature` is 0."""
        was_training = self.model.training
        self.model.eval()
        completions: list[Completion] = []
        for start in range(0, len(prompts), self.batch_size):
            completions.extend(
                self._generate_batch(
                    prompts[start : start + self.batch_size], max_new_tokens, stop_ids, temperature
                )
            )
        self.model.train(was_training)
        return completions

    def _generate_batch(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        temperature: float,
    ) -> list[Completion]:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.facts.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        output = self.model.generate(  # type: ignore[operator]
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            max_new_tokens=max_new_tokens,
            eos_token_id=list(stop_ids),
            pad_token_id=self.facts.pad_id,
            **sampling,
        )
        stops = set(stop_ids)
        completions = []
        for row in output[:, width:].tolist():
            ids: list[int] = []
            for token in row:
                ids.append(token)
                if token in stops:
                    break
            completions.append(Completion(ids, self._finish_reason(ids, stops)))
        return completions

    def _finish_reason(self, ids: list[int], stops: set[int]) -> FinishReason:
        if ids and ids[-1] in stops:
            return "think_end" if ids[-1] == self.facts.think_end_id else "eos"
        return "length"
