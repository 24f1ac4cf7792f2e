"""A step's samples carry the advantages the learner trained with: the batch's, for the chosen problems."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from anytime.brpo.config import BRPOConfig
from anytime.contracts.learn import LearnerConfig
from services.learner.batch import build_step_batch
from services.learner.samples import step_samples
from tests.fixtures.synthetic import StepShape, synthetic_step

VOCAB = list(range(10, 40))


class Tokenizer:
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        assert skip_special_tokens is False  # the markers are what a reader needs to see
        return " ".join(str(i) for i in ids)


@pytest.mark.parametrize(
    "brpo", [BRPOConfig(b_max=12, num_budgets=3, num_summaries=2), BRPOConfig(algorithm="grpo", b_max=12)]
)
def test_the_samples_advantages_are_the_batchs(brpo: BRPOConfig) -> None:
    config = LearnerConfig(brpo=brpo)
    shape = StepShape(
        problems=3, group_size=4, budgets=config.prior.budgets, num_summaries=brpo.resolved_num_summaries
    )
    trajectories, verdicts = synthetic_step(
        shape, vocab=VOCAB, ellipsis_ids=[1], delimiter_ids=[2], think_end_id=3, eos_id=4, seed=5
    )
    batch = build_step_batch(trajectories, verdicts, config.brpo, config.prior)
    samples = step_samples(trajectories, verdicts, ["p2", "p0", "missing"], config, Tokenizer())
    assert [(s.problem_id, s.trace_index) for s in samples] == [("p2", g) for g in range(4)] + [
        ("p0", g) for g in range(4)
    ]
    groups = {group.problem_id: group for group in batch.groups}
    assert any(group.thinking_adv.abs().sum() > 0 for group in groups.values())
    for sample in samples:
        group = groups[sample.problem_id]
        g = sample.trace_index
        for cut in sample.cuts:
            for j, budget in enumerate(cut.budgets):
                b = list(config.prior.budgets).index(budget)
                assert cut.thinking_advantages[j] == pytest.approx(float(group.thinking_adv[g, b]))
            for answer in cut.answers:
                b, a = answer.budget_index, answer.summary_index
                assert answer.advantage == pytest.approx(float(group.summary_adv[g, b, a]))
                assert answer.reward == float(group.rewards[g, b, a])
        assert len(sample.answers) == len(config.prior.budgets) * brpo.resolved_num_summaries
    assert step_samples(trajectories, verdicts, [], config, Tokenizer()) == []
