"""Anytime evaluation: accuracy at every budget from one thinking trace per problem.

Each problem is thought through once up to the largest budget; the trace is cut at every budget
(`anytime.brpo.cuts`), one summary is generated per distinct cut and graded with the verifier's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from anytime.brpo.cuts import Cut, cut_trace
from anytime.problems import Problem
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat
from anytime.tinymodel.facts import ModelFacts
from services.rollout.transformers_engine import TransformersEngine
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
    engine: TransformersEngine,
    tokenizer: Any,
    problems: Sequence[Problem],
    budgets: Sequence[int],
    fmt: SummaryFormat,
    summary_max_tokens: int = 32,
    temperature: float = 0.0,
) -> AnytimeEvaluation:
    facts: ModelFacts = engine.facts
    prompts = [prompt_ids(tokenizer, p.problem) for p in problems]
    thoughts = engine.generate(prompts, budgets[-1], [facts.think_end_id, facts.eos_id], temperature)
    requests: list[tuple[int, Cut]] = []
    for index, thought in enumerate(thoughts):
        cuts = cut_trace(
            len(thought.token_ids), thought.finish_reason, budgets, facts.ellipsis_ids, facts.delimiter_ids
        )
        requests.extend((index, cut) for cut in cuts)
    summaries = engine.generate(
        [cut.summary_prompt(prompts[i], thoughts[i].token_ids) for i, cut in requests],
        summary_max_tokens,
        [facts.eos_id],
        temperature,
    )
    result = AnytimeEvaluation(budgets=list(budgets), correct=[0] * len(budgets), total=len(problems))
    result.thinking_lengths = [len(t.token_ids) for t in thoughts]
    result.closed = sum(t.finish_reason == "think_end" for t in thoughts)
    for (index, cut), summary in zip(requests, summaries, strict=True):
        prefix = thoughts[index].token_ids[: cut.length]
        if prefix and prefix[-1] == facts.eos_id:
            status, formatted = Status.INCORRECT, False  # a prefix that ended on EOS scores 0 (DESIGN §2.2)
        else:
            response = tokenizer.decode(
                [*cut.inserted_ids, *cut.delimiter_ids, *summary.token_ids], skip_special_tokens=True
            )
            closed = bool(prefix) and prefix[-1] == facts.think_end_id
            formatted = is_formatted(closed, response, fmt)
            status = grade_answer(extract_answer(response, fmt), problems[index].answer)
        result.statuses[status.value] += cut.num_budgets
        if status is Status.CORRECT and formatted:
            for budget_index in cut.budget_indices:
                result.correct[budget_index] += 1
    return result
