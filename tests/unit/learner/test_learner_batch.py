"""A step's trajectories and verdicts → rewards, the core library's advantages, packed trees (no model)."""

from __future__ import annotations

import pytest
import torch

from anytime.brpo.advantages import brpo_advantages
from anytime.brpo.config import Algorithm, BRPOConfig, SummaryMode, ThinkingBaseline
from anytime.brpo.packing import pack_tree
from anytime.brpo.tokens import TokenRole
from anytime.verdict import VerdictRecord
from services.learner.batch import (
    BatchMismatchError,
    MissingVerdictsError,
    build_step_batch,
    cuts_of,
    rollout_logprobs,
    trajectory_rewards,
)
from tests.fixtures.rewards import prefix_groups, reward_tensor
from tests.fixtures.synthetic import StepShape, make_trajectory, synthetic_step, verdict

THINK_END, EOS, ELLIPSIS, DELIMITER = 3, 2, (7,), (8, 9)
VOCAB = range(10, 100)
BRPO = BRPOConfig(b_max=12, num_budgets=3, num_summaries=2, group_size=2)


def _closed_trace(summaries: list[list[list[int]]], trace_index: int = 0, problem: str = "p0"):
    """Budgets (4, 8, 12), A = 2, a closed thought of 6 tokens: cut 4 (budget 0) and cut 6 (budgets 1, 2)."""
    return make_trajectory(
        run_id="r",
        step=3,
        problem_id=problem,
        trace_index=trace_index,
        prompt_ids=[11, 12],
        thinking_ids=[20, 21, 22, 23, 24, THINK_END],
        finish_reason="think_end",
        budgets=(4, 8, 12),
        num_summaries=2,
        ellipsis_ids=ELLIPSIS,
        delimiter_ids=DELIMITER,
        summaries=summaries,
    )


def _verdicts(trajectory, rewards_per_cut: list[list[float]]) -> dict[str, dict]:
    return {
        trajectory.summary_id(c, s): verdict(r)
        for c, rewards in enumerate(rewards_per_cut)
        for s, r in enumerate(rewards)
    }


def test_collapsed_cut_rewards_split_a_per_budget() -> None:
    trace = _closed_trace([[[30, EOS], [31, EOS]], [[32, EOS], [33, EOS], [34, EOS], [35, EOS]]])
    assert [c.cut for c in cuts_of(trace)] == [4, 6]
    rewards = trajectory_rewards(trace, _verdicts(trace, [[1, 0], [1, 1, 0, 1]]))
    assert rewards == [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def test_a_missing_verdict_refuses_the_step_and_says_what_to_do() -> None:
    trace = _closed_trace([[[30, EOS], [31, EOS]], [[32, EOS]] * 4])
    verdicts = _verdicts(trace, [[1, 0], [1, 1, 0, 1]])
    del verdicts[trace.summary_id(1, 2)]
    with pytest.raises(MissingVerdictsError, match=r"1 summaries have no verdict .*:c1:s2.*verifier"):
        build_step_batch([trace], {trace.id: verdicts}, BRPO, BRPO.budget_prior())
    with pytest.raises(MissingVerdictsError, match="6 summaries"):
        build_step_batch([trace], {}, BRPO, BRPO.budget_prior())


def test_a_verdict_without_a_finite_reward_is_refused() -> None:
    with pytest.raises(ValueError, match="reward"):
        VerdictRecord.model_validate({"status": "error", "formatted": False})
    with pytest.raises(ValueError, match="finite"):
        VerdictRecord(status="correct", formatted=True, reward=float("nan"))


def test_batches_that_do_not_fit_the_run_are_refused() -> None:
    trace = _closed_trace([[[30, EOS], [31, EOS]], [[32, EOS]] * 4])
    verdicts = {trace.id: _verdicts(trace, [[1, 0], [1, 1, 0, 1]])}
    with pytest.raises(BatchMismatchError, match=r"budgets \[4, 8, 12\] .* budgets \[4, 8\]"):
        build_step_batch(
            [trace],
            verdicts,
            BRPOConfig(b_max=8, num_budgets=2, num_summaries=2),
            BRPOConfig(b_max=8, num_budgets=2, num_summaries=2).budget_prior(),
        )
    with pytest.raises(BatchMismatchError, match="twice"):
        build_step_batch([trace, trace], verdicts, BRPO, BRPO.budget_prior())
    other_step = trace.model_copy(update={"step": 4, "id": "r:4:p0:0"})
    with pytest.raises(BatchMismatchError, match="one step of one run"):
        build_step_batch(
            [trace, other_step], {**verdicts, other_step.id: verdicts[trace.id]}, BRPO, BRPO.budget_prior()
        )
    with pytest.raises(BatchMismatchError, match="no trajectories"):
        build_step_batch([], {}, BRPO, BRPO.budget_prior())


def _reference(trajectories, verdicts, config):
    """Advantages straight from the core library on the [B, G, S, A] reward tensor."""
    problems = sorted({t.problem_id for t in trajectories})
    rows = [
        sorted((t for t in trajectories if t.problem_id == p), key=lambda t: t.trace_index) for p in problems
    ]
    cuts = [[cuts_of(t) for t in row] for row in rows]
    per_cut = [
        [
            [
                [verdicts[t.id][t.summary_id(c, s)].reward for s in range(len(r.summaries))]
                for c, r in enumerate(t.cuts)
            ]
            for t in row
        ]
        for row in rows
    ]
    rewards = reward_tensor(cuts, per_cut, config.resolved_num_summaries)
    return rows, cuts, brpo_advantages(rewards, config, prefix_groups(cuts), config.budget_prior())


@pytest.mark.parametrize(
    "config",
    [
        BRPO,
        BRPO.model_copy(update={"summary_mode": SummaryMode.BRPO_PER_BUDGET}),
        BRPOConfig(b_max=12, num_budgets=3, num_summaries=2, baseline=ThinkingBaseline.V1),
        BRPOConfig(b_max=12, num_budgets=3, num_summaries=1, summary_mode=SummaryMode.GRPO, prior="linear"),
        BRPOConfig(algorithm=Algorithm.GRPO, b_max=12),
    ],
    ids=["brpo", "brpo-per-budget", "brpo-v1", "grpo-linear", "grpo"],
)
def test_advantages_are_the_core_librarys(config: BRPOConfig) -> None:
    shape = StepShape(
        problems=3,
        group_size=4,
        budgets=config.budget_prior().budgets,
        num_summaries=config.resolved_num_summaries,
        summary_tokens=3,
    )
    trajectories, verdicts = synthetic_step(
        shape, vocab=VOCAB, ellipsis_ids=ELLIPSIS, delimiter_ids=DELIMITER, think_end_id=THINK_END, eos_id=EOS
    )
    batch = build_step_batch(trajectories[::-1], verdicts, config, config.budget_prior())  # order-independent
    rows, cuts, (thinking, summary) = _reference(trajectories, verdicts, config)
    assert torch.abs(thinking).sum() > 0
    for b, group in enumerate(batch.groups):
        assert [t.id for t in group.trajectories] == [t.id for t in rows[b]]
        torch.testing.assert_close(group.thinking_adv, thinking[b])
        torch.testing.assert_close(group.summary_adv, summary[b])
    # Every token of every packed tree carries its segment's or its summary's advantage.
    for number, (tree, trajectory) in enumerate(zip(batch.trees, batch.trajectories, strict=True)):
        b, g = divmod(number, shape.group_size)
        expected = pack_tree(
            trajectory.prompt_ids,
            trajectory.thinking_ids,
            cuts[b][g],
            _summaries(trajectory, config.resolved_num_summaries),
            thinking[b, g],
            summary[b, g],
        )
        torch.testing.assert_close(tree.advantages, expected.advantages)
        assert torch.equal(tree.input_ids, expected.input_ids)


def _summaries(trajectory, num_summaries):
    from anytime.brpo.cuts import split_by_budget

    per_cut = [[s.ids for s in cut.summaries] for cut in trajectory.cuts]
    return split_by_budget(cuts_of(trajectory), per_cut, num_summaries)


def test_design_worked_example_through_the_learner() -> None:
    """docs/method.md §2.5: S = 4, uniform prior, G = 2; R(a) = [0, 0, 1, 1], R(b) = [0, 1, 1, 1]."""
    config = BRPOConfig(b_max=16, num_budgets=4, num_summaries=1)
    traces, verdicts = [], {}
    for index, scores in enumerate(([0, 0, 1, 1], [0, 1, 1, 1])):
        trace = make_trajectory(
            run_id="r",
            step=0,
            problem_id="p",
            trace_index=index,
            prompt_ids=[11],
            thinking_ids=list(range(20, 36)),  # 16 tokens: four distinct cuts
            finish_reason="length",
            budgets=(4, 8, 12, 16),
            num_summaries=1,
            ellipsis_ids=ELLIPSIS,
            delimiter_ids=DELIMITER,
            summaries=[[[40, EOS]] for _ in range(4)],
        )
        traces.append(trace)
        verdicts[trace.id] = _verdicts(trace, [[s] for s in scores])
    group = build_step_batch(traces, verdicts, config, config.budget_prior()).groups[0]
    expected = torch.tensor([[-0.125, 0.03125, 0.25, 0.08036], [0.125, 0.28125, 0.08333, 0.02679]])
    torch.testing.assert_close(group.thinking_adv, expected, atol=1e-5, rtol=0)
    # A = 1: the authors' summary baseline is the mean over the G traces at the budget: [0, 0.5, 1, 1].
    assert torch.equal(group.summary_adv, torch.tensor([[0.0, -0.5, 0, 0], [0, 0.5, 0, 0]])[..., None])


def test_the_learner_pools_the_summaries_of_collapsed_budgets() -> None:
    # Budgets 4/8/12, A = 2, a closed thought of 6 tokens: cut 4 serves budget 0, cut 6 budgets 1 and 2.
    # Rewards per cut: [1, 0] and [1, 1, 0, 1]; the full-trace cut's pool of 4 has mean 0.75.
    trace = _closed_trace([[[30, EOS], [31, EOS]], [[32, EOS], [33, EOS], [34, EOS], [35, EOS]]])
    verdicts = {trace.id: _verdicts(trace, [[1, 0], [1, 1, 0, 1]])}
    pooled = build_step_batch([trace], verdicts, BRPO, BRPO.budget_prior()).groups[0].summary_adv[0]
    assert pooled.tolist() == [[0.5, -0.5], [0.25, 0.25], [-0.75, 0.25]]
    per_budget = BRPO.model_copy(update={"summary_mode": SummaryMode.BRPO_PER_BUDGET})
    own = build_step_batch([trace], verdicts, per_budget, per_budget.budget_prior()).groups[0].summary_adv[0]
    assert own.tolist() == [[0.5, -0.5], [0.0, 0.0], [-0.5, 0.5]]


def test_rollout_logprobs_line_up_with_the_packed_tree() -> None:
    trace = _closed_trace([[[30, EOS], [31, 32, EOS]], [[33, EOS], [34, EOS], [35, EOS], [36, EOS]]])
    # Distinct log-probs per token, so any misalignment shows.
    thinking = [-0.1 * (i + 1) for i in range(len(trace.thinking_ids))]
    cuts = []
    for c, cut in enumerate(trace.cuts):
        samples = [
            s.model_copy(
                update={"logprobs": [-(c + 1) - 0.01 * (k + 1) - 0.1 * j for j in range(len(s.ids))]}
            )
            for k, s in enumerate(cut.summaries)
        ]
        cuts.append(cut.model_copy(update={"summaries": samples}))
    trace = trace.model_copy(update={"thinking_logprobs": thinking, "cuts": cuts})
    verdicts = {trace.id: _verdicts(trace, [[1, 0], [1, 1, 0, 1]])}
    tree = build_step_batch([trace], verdicts, BRPO, BRPO.budget_prior()).trees[0]
    values = rollout_logprobs(trace, tree)
    roles = tree.roles
    assert values[roles == TokenRole.THINKING].tolist() == pytest.approx(thinking)
    assert torch.all(values[(roles == TokenRole.PROMPT) | (roles == TokenRole.INSERTED)] == 0)
    # Budget 0 (cut 0) samples 0, 1; budgets 1 and 2 (cut 1) samples 0-1 and 2-3, in block order.
    owners = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    for block, (c, k) in zip(tree.blocks, owners, strict=True):
        body = values[block.start + block.prefix_len : block.end].tolist()
        assert body == pytest.approx(trace.cuts[c].summaries[k].logprobs)
        assert (
            tree.input_ids[block.start + block.prefix_len : block.end].tolist()
            == trace.cuts[c].summaries[k].ids
        )
