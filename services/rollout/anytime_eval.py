"""Anytime evaluation: accuracy at every budget from one thinking trace per problem.

Each problem is thought through once (greedily) up to the largest budget by the anytime rollout; the
trace is cut at every budget, one summary is generated per distinct cut and graded with the verifier's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from anytime.problems import Problem
from services.rollout.anytime_rollout import RolloutConfig, rollout
from services.rollout.engine import Engine, SamplingConfig
from services.verifier.verifier import Submission, Verdict, grade_many


@dataclass
class AnytimeEvaluation:
    budgets: list[int]
    correct: list[int]
    total: int
    statuses: Counter[str] = field(default_factory=Counter)
    thinking_lengths: list[int] = field(default_factory=list)
    closed: int = 0

    @property
    def accuracy(self) -> list[float]:
        return [c / self.total for c in self.correct]

    @property
    def anytime_score(self) -> float:
        """Mean accuracy over the budgets: the anytime score under a uniform prior."""
        return sum(self.accuracy) / len(self.budgets)

    @property
    def mean_thinking_length(self) -> float:
        return sum(self.thinking_lengths) / max(1, len(self.thinking_lengths))


GradeMany = Callable[[Sequence[Submission]], list[Verdict]]


def evaluate_anytime(
    engine: Engine,
    problems: Sequence[Problem],
    budgets: Sequence[int],
    summary_max_tokens: int = 32,
    grade: GradeMany = grade_many,
) -> AnytimeEvaluation:
    """Greedy: one trace per problem, one summary per distinct cut (collapsed budgets share it), graded by
    the verifier (hard time limits; pass an open `Verifier.grade_many` to reuse its grader processes)."""
    config = RolloutConfig(
        budgets=tuple(budgets),
        group_size=1,
        num_summaries=1,
        summary_max_tokens=summary_max_tokens,
        sampling=SamplingConfig(temperature=0.0),
    )
    trajectories = rollout(engine, problems, config, run_id="eval", step=0)
    facts = engine.facts
    result = AnytimeEvaluation(budgets=list(budgets), correct=[0] * len(budgets), total=len(problems))
    result.thinking_lengths = [len(t.thinking_ids) for t in trajectories]
    result.closed = sum(t.finish_reason == "think_end" for t in trajectories)
    # Greedy: the k samples of a collapsed cut are one sample repeated; grade it once.
    graded = [(t, cut) for t in trajectories for cut in t.cuts]
    verdicts = grade(
        [
            Submission(
                response=cut.summaries[0].response,
                ground_truth=t.answer,
                thinking_closed=t.prefix_ends_with(cut, facts.think_end_id),
                ended_in_eos=t.prefix_ends_with(cut, facts.eos_id),
            )
            for t, cut in graded
        ]
    )
    for (_, cut), verdict in zip(graded, verdicts, strict=True):
        result.statuses[verdict.status.value] += len(cut.budget_indices)
        if verdict.reward:
            for budget_index in cut.budget_indices:
                result.correct[budget_index] += 1
    return result
