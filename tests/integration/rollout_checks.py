"""Invariants every anytime rollout must satisfy (docs/method.md §2.3), checked on real engine outputs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from anytime.contracts.rollout import RolloutConfig
from anytime.model_facts import ModelFacts
from anytime.problems import Problem
from anytime.trajectory import Trajectory


def check_rollout(
    trajectories: Sequence[Trajectory], problems: Sequence[Problem], config: RolloutConfig, facts: ModelFacts
) -> Counter[str]:
    """Asserts the invariants; returns how many traces ended each way."""
    budgets = config.budgets
    assert len(trajectories) == len(problems) * config.group_size
    assert len({t.id for t in trajectories}) == len(trajectories)
    assert Counter(t.problem_id for t in trajectories) == {p.id: config.group_size for p in problems}
    for t in trajectories:
        z = t.thinking_ids
        assert 0 < len(z) <= budgets[-1]
        assert len(t.thinking_logprobs) == len(z)
        assert all(math.isfinite(x) and x <= 1e-5 for x in t.thinking_logprobs)
        expected_finish = {facts.think_end_id: "think_end", facts.eos_id: "eos"}.get(z[-1], "length")
        assert t.finish_reason == expected_finish
        if t.finish_reason == "length":
            assert len(z) == budgets[-1]
        # Cuts are min(b_j, len(z)); budgets past the end share one cut; every budget served once.
        cut_of = {j: cut for cut in t.cuts for j in cut.budget_indices}
        assert sorted(cut_of) == list(range(len(budgets)))
        for j, b in enumerate(budgets):
            assert cut_of[j].cut == min(b, len(z))
            assert budgets[j] in cut_of[j].budgets
        assert len(t.cuts) == len({min(b, len(z)) for b in budgets})
        for cut in t.cuts:
            # Inserted ids exactly when the thought was cut or never closed.
            cut_short = cut.cut < len(z) or t.finish_reason != "think_end"
            assert cut.inserted_ids == (list(facts.ellipsis_ids) if cut_short else [])
            assert cut.delimiter_ids == list(facts.delimiter_ids)
            assert len(cut.summaries) == config.num_summaries * len(cut.budget_indices)
            for s in cut.summaries:
                assert 0 < len(s.ids) <= config.summary_max_tokens
                assert len(s.logprobs) == len(s.ids)
                assert all(math.isfinite(x) and x <= 1e-5 for x in s.logprobs)
                assert (s.finish_reason == "eos") == (s.ids[-1] == facts.eos_id)
                assert facts.eos_id not in s.ids[:-1]  # summaries stop at EOS ...
                # ... and only there: a summary may write </think> (it then fails the format rule).
    return Counter(t.finish_reason for t in trajectories)
