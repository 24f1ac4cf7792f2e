"""Anytime evaluation: accuracy at every budget from one thinking trace per problem.

Each problem is thought through once (greedily) up to the largest budget by the anytime rollout; the
trace is cut at every budget, one summary is generated per distinct cut and graded with the verifier's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from anytime.problems import Problem
from anytime.summary_format import SummaryFormat
from services.rollout.anytime_rollout import RolloutConfig, rollout
from services.rollout.engine import Engine, SamplingConfig
from services.verifier.extraction import extract_answer, is_formatted
from services.verifier.grading import Status, grade_answer


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


def evaluate_anytime(
    engine: Engine,
    problems: Sequence[Problem],
    budgets: Sequence[int],
    fmt: SummaryFormat,
    summary_max_tokens: int = 32,
) -> AnytimeEvaluation:
    """Greedy: one trace per problem, one summary per distinct cut (collapsed budgets share it)."""
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
    for trajectory in trajectories:
        for cut in trajectory.cuts:
            # Greedy: the k samples of a collapsed cut are one sample repeated; grade it once.
            response = cut.summaries[0].response
            if trajectory.prefix_ends_with(cut, facts.eos_id):
                status, formatted = Status.INCORRECT, False  # a prefix that ended on EOS scores 0 (§2.2)
            else:
                closed = trajectory.prefix_ends_with(cut, facts.think_end_id)
                formatted = is_formatted(closed, response, fmt)
                status = grade_answer(extract_answer(response, fmt), trajectory.answer)
            result.statuses[status.value] += len(cut.budget_indices)
            if status is Status.CORRECT and formatted:
                for budget_index in cut.budget_indices:
                    result.correct[budget_index] += 1
    return result
