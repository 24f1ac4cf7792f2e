"""Step metrics on hand-computed batches, and mini-/micro-batch planning."""

from __future__ import annotations

import pytest
import torch

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import Algorithm, BRPOConfig
from services.learner.batch import build_step_batch
from services.learner.config import LearnerConfig, OldLogProbs
from services.learner.metrics import batch_metrics, variance_ratio
from services.learner.microbatches import plan_microbatches, split_minibatches
from services.learner.synthetic import make_trajectory, verdict

THINK_END, EOS, ELLIPSIS, DELIMITER = 3, 2, (7,), (8,)


def _trace(problem: str, index: int, thinking: list[int], reason, budgets, summaries):
    return make_trajectory(
        run_id="r",
        step=0,
        problem_id=problem,
        trace_index=index,
        prompt_ids=[11],
        thinking_ids=thinking,
        finish_reason=reason,
        budgets=budgets,
        num_summaries=1,
        ellipsis_ids=ELLIPSIS,
        delimiter_ids=DELIMITER,
        summaries=summaries,
    )


def _step(scores: dict[tuple[str, int], list[float]], budgets=(4, 8, 12, 16)):
    """Traces of 16 thinking tokens that hit b_max (one distinct cut per budget), A = 1."""
    traces, verdicts = [], {}
    for (problem, index), values in scores.items():
        trace = _trace(
            problem, index, list(range(20, 36)), "length", budgets, [[[40, 41, EOS]]] * len(budgets)
        )
        traces.append(trace)
        verdicts[trace.id] = {trace.summary_id(c, 0): verdict(v) for c, v in enumerate(values)}
    return traces, verdicts


def test_variance_ratio_hand_computed() -> None:
    # Returns [1, 0, 0, 0]: Var = 3/16. V2 per problem: p0 mean 0.5 → advantages [0.5, -0.5, 0, 0]: Var 1/8.
    config = BRPOConfig(algorithm=Algorithm.GRPO, b_max=16)
    traces, verdicts = _step({("p0", 0): [1], ("p0", 1): [0], ("p1", 0): [0], ("p1", 1): [0]}, budgets=(16,))
    metrics = batch_metrics(build_step_batch(traces, verdicts, config), config)
    assert metrics["variance/v2_baseline"] == pytest.approx(2 / 3)
    assert metrics["variance/run_baseline"] == pytest.approx(2 / 3)  # GRPO's baseline is V2
    assert variance_ratio(torch.ones(4), torch.zeros(4)) is None  # no spread: no ratio


def test_design_example_metrics() -> None:
    """DESIGN.md §2.3 table: returns and BRPO advantages of traces a and b."""
    config = BRPOConfig(b_max=16, num_budgets=4, num_summaries=1)
    traces, verdicts = _step({("p", 0): [0, 0, 1, 1], ("p", 1): [0, 1, 1, 1]})
    metrics = batch_metrics(build_step_batch(traces, verdicts, config), config)
    returns = torch.tensor([0.5, 0.5, 0.5, 0.25, 0.75, 0.75, 0.5, 0.25])
    brpo = torch.tensor([-0.125, 0.03125, 0.25, 0.080357, 0.125, 0.28125, 0.083333, 0.026786])
    v2 = torch.tensor([-0.125, -0.125, 0.0, 0.0, 0.125, 0.125, 0.0, 0.0])
    assert metrics["variance/run_baseline"] == pytest.approx(
        float(brpo.var(unbiased=False) / returns.var(unbiased=False)), rel=1e-4
    )
    assert metrics["variance/v2_baseline"] == pytest.approx(
        float(v2.var(unbiased=False) / returns.var(unbiased=False))
    )
    assert metrics["reward/budget_4/mean"] == 0 and metrics["reward/budget_8/mean"] == 0.5
    assert metrics["reward/budget_12/mean"] == 1 and metrics["reward/budget_16/mean"] == 1
    assert metrics["anytime/score"] == pytest.approx(0.625) and metrics["anytime/final"] == 1
    assert "variance/budget_16/v2_baseline" not in metrics  # both returns 0.25 at the last budget: no spread
    assert metrics["verdict/correct"] == 5 and metrics["verdict/incorrect"] == 3
    linear = BRPOConfig(b_max=16, num_budgets=4, num_summaries=1, prior=PriorKind.LINEAR)
    score = batch_metrics(build_step_batch(traces, verdicts, linear), linear)["anytime/score"]
    assert score == pytest.approx((0 * 4 + 0.5 * 8 + 1 * 12 + 1 * 16) / 40)


def test_thinking_and_summary_shape_metrics() -> None:
    config = BRPOConfig(b_max=8, num_budgets=2, num_summaries=1)
    closed = _trace(
        "p", 0, [20, 21, THINK_END], "think_end", (4, 8), [[[40, EOS], [41, EOS]]]
    )  # one cut, two budgets
    eos = _trace("p", 1, [20, 21, 22, 23, 24, EOS], "eos", (4, 8), [[[40, 41, 42, EOS]], [[40, 41, EOS]]])
    verdicts = {
        t.id: {
            t.summary_id(c, s): verdict(0) for c, cut in enumerate(t.cuts) for s in range(len(cut.summaries))
        }
        for t in (closed, eos)
    }
    metrics = batch_metrics(build_step_batch([closed, eos], verdicts, config), config)
    assert metrics["thinking/length_mean"] == 4.5
    assert metrics["thinking/closed_share"] == 0.5 and metrics["thinking/eos_share"] == 0.5
    assert metrics["summary/length_mean"] == pytest.approx((2 + 2 + 4 + 3) / 4)
    assert metrics["batch/trajectories"] == 2 and metrics["batch/summaries"] == 4
    assert metrics["advantage/nonzero_token_share"] == 0


def test_minibatches_take_whole_problem_groups() -> None:
    assert split_minibatches([2, 2, 2, 2], 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert split_minibatches([3, 1, 2], 2) == [[0, 1, 2, 3], [4, 5]]
    assert split_minibatches([4], 2) == [[0, 1], [2, 3]]  # fewer groups than mini-batches: split traces
    assert split_minibatches([1], 3) == [[0]]


def test_microbatches_fill_the_token_budget_in_order() -> None:
    assert plan_microbatches([5, 5, 5, 12, 1], 10) == [[0, 1], [2], [3], [4]]
    assert plan_microbatches([3, 3, 3], 100) == [[0, 1, 2]]


def test_learner_config_defaults_are_the_papers_and_refuses_bad_combinations() -> None:
    config = LearnerConfig()
    assert (config.lr, config.weight_decay, config.grad_clip, config.mini_batches) == (1e-6, 0.01, 1.0, 2)
    assert config.resolved_response_length == 8000 + 4 * 4 * 128
    with pytest.raises(ValueError, match="temperature 1"):
        LearnerConfig(old_logprobs=OldLogProbs.ROLLOUT, temperature=0.6)
