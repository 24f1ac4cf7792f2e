"""Synthetic steps: trajectories and verdicts of a given shape, for tests and the GPU benchmark.

Token ids are random draws from a vocabulary range (the caller keeps marker ids out of it); the cuts are the
core library's (`cut_trace`), so the records have exactly the rollout's structure. Rewards are drawn per
summary. Nothing here is a model: it builds inputs for the learner without a rollout.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anytime.brpo.cuts import FinishReason, cut_trace
from anytime.trajectory import CutRecord, SummarySample, Trajectory, trajectory_id

DEFAULT_LOGPROB = -1.0


def make_trajectory(
    *,
    run_id: str,
    step: int,
    problem_id: str,
    trace_index: int,
    prompt_ids: Sequence[int],
    thinking_ids: Sequence[int],
    finish_reason: FinishReason,
    budgets: Sequence[int],
    num_summaries: int,
    ellipsis_ids: Sequence[int],
    delimiter_ids: Sequence[int],
    summaries: Sequence[Sequence[Sequence[int]]],
    policy_version: int = 0,
    logprob: float = DEFAULT_LOGPROB,
) -> Trajectory:
    """A trajectory whose cut `c` (ascending, from `cut_trace`) carries `summaries[c]` (k·A id lists)."""
    cuts = cut_trace(len(thinking_ids), finish_reason, budgets, ellipsis_ids, delimiter_ids)
    if len(summaries) != len(cuts):
        raise ValueError(f"give summaries for each of the {len(cuts)} distinct cuts; got {len(summaries)}")
    records = [
        CutRecord(
            budget_indices=list(cut.budget_indices),
            budgets=[budgets[j] for j in cut.budget_indices],
            cut=cut.length,
            inserted_ids=list(cut.inserted_ids),
            delimiter_ids=list(cut.delimiter_ids),
            summaries=[
                SummarySample(
                    ids=list(ids),
                    logprobs=[logprob] * len(ids),
                    text="",
                    response="",
                    finish_reason="eos",
                )
                for ids in samples
            ],
        )
        for cut, samples in zip(cuts, summaries, strict=True)
    ]
    return Trajectory(
        id=trajectory_id(run_id, step, problem_id, trace_index),
        run_id=run_id,
        step=step,
        policy_version=policy_version,
        problem_id=problem_id,
        trace_index=trace_index,
        answer="0",
        budgets=list(budgets),
        num_summaries=num_summaries,
        prompt_ids=list(prompt_ids),
        thinking_ids=list(thinking_ids),
        thinking_logprobs=[logprob] * len(thinking_ids),
        finish_reason=finish_reason,
        cuts=records,
    )


def verdict(reward: float) -> dict[str, Any]:
    """A verifier record with this reward."""
    return {"status": "correct" if reward > 0 else "incorrect", "formatted": True, "reward": reward}


@dataclass(frozen=True)
class StepShape:
    """Problems × G traces, S budgets up to `b_max`, A summaries of `summary_tokens` each."""

    problems: int = 2
    group_size: int = 2
    budgets: tuple[int, ...] = (8, 16)
    num_summaries: int = 2
    prompt_tokens: int = 6
    summary_tokens: int = 4
    min_thinking: int = 1
    finish_reasons: tuple[FinishReason, ...] = ("think_end", "eos", "length")


def synthetic_step(
    shape: StepShape,
    *,
    vocab: Sequence[int],
    ellipsis_ids: Sequence[int],
    delimiter_ids: Sequence[int],
    think_end_id: int,
    eos_id: int,
    seed: int = 0,
    run_id: str = "synthetic",
    step: int = 0,
    policy_version: int = 0,
    reward_rate: float = 0.5,
) -> tuple[list[Trajectory], dict[str, dict[str, dict[str, Any]]]]:
    """Random trajectories of `shape` and a verdict for every summary (reward 1 with `reward_rate`)."""
    rng = random.Random(seed)
    b_max = shape.budgets[-1]
    trajectories = []
    for p in range(shape.problems):
        prompt = [rng.choice(vocab) for _ in range(shape.prompt_tokens)]
        for g in range(shape.group_size):
            reason = rng.choice(shape.finish_reasons)
            if reason == "length":
                thinking = [rng.choice(vocab) for _ in range(b_max)]
            else:
                body = [rng.choice(vocab) for _ in range(rng.randint(shape.min_thinking, b_max) - 1)]
                thinking = [*body, think_end_id if reason == "think_end" else eos_id]
            cuts = cut_trace(len(thinking), reason, shape.budgets, ellipsis_ids, delimiter_ids)
            summaries = [
                [
                    [rng.choice(vocab) for _ in range(shape.summary_tokens - 1)] + [eos_id]
                    for _ in range(cut.num_samples(shape.num_summaries))
                ]
                for cut in cuts
            ]
            trajectories.append(
                make_trajectory(
                    run_id=run_id,
                    step=step,
                    problem_id=f"p{p}",
                    trace_index=g,
                    prompt_ids=prompt,
                    thinking_ids=thinking,
                    finish_reason=reason,
                    budgets=shape.budgets,
                    num_summaries=shape.num_summaries,
                    ellipsis_ids=ellipsis_ids,
                    delimiter_ids=delimiter_ids,
                    summaries=summaries,
                    policy_version=policy_version,
                )
            )
    verdicts = {
        t.id: {
            t.summary_id(c, s): verdict(float(rng.random() < reward_rate))
            for c, cut in enumerate(t.cuts)
            for s in range(len(cut.summaries))
        }
        for t in trajectories
    }
    return trajectories, verdicts
