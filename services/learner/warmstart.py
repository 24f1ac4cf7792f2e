"""Supervised warm start: teach a model to think inside `<think> … </think>` and answer in summary format.

Simplifications, stated first: plain next-token cross-entropy on worked traces, no packing. Two kinds of
examples, tokenized exactly as the rollout builds sequences (each inserted string on its own):

- full:  prompt | trace `</think>` | delimiter | `\\boxed{answer}` EOS   (loss on trace and answer)
- cut:   prompt | trace[:k] | ellipsis | delimiter | `\\boxed{answer}` EOS   (loss on the answer only)

The cut examples teach the summary policy to answer from a partial thought, as BRPO later asks it to.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from anytime.model_facts import ModelFacts
from anytime.problems import Problem
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat

IGNORE = -100


class WarmStartConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(default=500, gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    cut_fraction: float = Field(default=0.3, ge=0, le=1, description="share of examples cut mid-thought")
    grad_clip: float = Field(default=1.0, gt=0)
    seed: int = 0


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def encode_example(
    problem: Problem, tokenizer: Any, facts: ModelFacts, fmt: SummaryFormat, cut_at: int | None
) -> Example:
    """One training sequence; `cut_at` = number of trace tokens kept, or None for the whole thought."""
    if problem.trace is None:
        raise ValueError(f"problem {problem.id} has no trace; the warm start needs worked traces")
    prompt = prompt_ids(tokenizer, problem.problem)
    thinking = tokenizer.encode(problem.trace + "\n", add_special_tokens=False) + [facts.think_end_id]
    answer = tokenizer.encode(f"\\boxed{{{problem.answer}}}", add_special_tokens=False) + [facts.eos_id]
    delimiter = list(facts.delimiter_ids)
    if cut_at is None:
        ids = prompt + thinking + delimiter + answer
        labels = [IGNORE] * len(prompt) + thinking + [IGNORE] * len(delimiter) + answer
    else:
        kept, inserted = thinking[:cut_at], list(facts.ellipsis_ids)
        ids = prompt + kept + inserted + delimiter + answer
        labels = [IGNORE] * (len(prompt) + len(kept) + len(inserted) + len(delimiter)) + answer
    return Example(ids, labels)


def build_examples(
    problems: Sequence[Problem],
    tokenizer: Any,
    facts: ModelFacts,
    fmt: SummaryFormat,
    cut_fraction: float,
    seed: int,
) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for problem in problems:
        examples.append(encode_example(problem, tokenizer, facts, fmt, None))
        if rng.random() < cut_fraction:
            trace_len = len(tokenizer.encode((problem.trace or "") + "\n", add_special_tokens=False))
            examples.append(
                encode_example(problem, tokenizer, facts, fmt, rng.randint(1, max(1, trace_len - 1)))
            )
    return examples


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


@dataclass(frozen=True)
class WarmStartReport:
    steps: int
    final_loss: float
    seconds: float
    examples: int


def warm_start(
    model: torch.nn.Module,
    examples: Sequence[Example],
    config: WarmStartConfig,
    pad_id: int,
    on_step: Callable[[int, float], None] | None = None,
) -> WarmStartReport:
    """Train `model` in place with AdamW, linear warm-up then cosine decay; returns what it did."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def lr_factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    order: list[int] = []
    loss_value = float("nan")
    started = time.perf_counter()
    for step in range(config.steps):
        if len(order) < config.batch_size:
            order.extend(rng.sample(range(len(examples)), len(examples)))
        batch = [examples[order.pop()] for _ in range(config.batch_size)]
        loss = model(**collate(batch, pad_id)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        loss_value = float(loss.detach())
        if on_step is not None:
            on_step(step, loss_value)
    return WarmStartReport(config.steps, loss_value, time.perf_counter() - started, len(examples))
