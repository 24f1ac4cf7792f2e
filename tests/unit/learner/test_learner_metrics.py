"""Step metrics on hand-computed batches, and mini-/micro-batch planning."""

from __future__ import annotations

import pytest
import torch

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import Algorithm, BRPOConfig
from anytime.contracts.learn import LearnerConfig, OldLogProbs
from services.learner.batch import build_step_batch
from services.learner.metrics import batch_metrics, reward_at
from services.learner.microbatches import plan_microbatches, split_minibatches
from tests.fixtures.synthetic import make_trajectory, verdict

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


def test_variance_ratios_for_all_three_baselines_whatever_the_run_uses() -> None:
    # GRPO, S = 1: returns [1, 0, 0, 0], Var = 3/16. V2 per problem: p0 mean 0.5 → advantages [.5, -.5, 0, 0],
    # Var 1/8 → 2/3. At the only budget V1 = 0 (ratio 1) and BRPO = V2.
    config = BRPOConfig(algorithm=Algorithm.GRPO, b_max=16)
    traces, verdicts = _step({("p0", 0): [1], ("p0", 1): [0], ("p1", 0): [0], ("p1", 1): [0]}, budgets=(16,))
    metrics = batch_metrics(build_step_batch(traces, verdicts, config, config.budget_prior()), config)
    assert metrics["variance/budget_16/v2"] == pytest.approx(2 / 3) == metrics["variance/v2"]
    assert metrics["variance/budget_16/brpo"] == pytest.approx(2 / 3)
    assert metrics["variance/budget_16/v1"] == 1 and metrics["variance/budget_16/traces"] == 4


def test_masked_variance_ratios_leave_out_a_trace_that_ended() -> None:
    """Budgets 4/8, A = 1: trace b closed its thought after 3 tokens, so it has no segment at budget 8.

    p0: a (8 tokens) R = [0, 1], b (3 tokens) R = [1, 1]; p1: c, d (8 tokens) R = [1, 1], [0, 0].
    Q = [.5, .5], [1, .5], [1, .5], [0, 0]. Budget 4 (all): Var(Q) = 0.171875, V2 advantages
    [-.25, .25, .5, -.5] → 10/11, BRPO = V2, V1 = 0 → 1. Budget 8 (a, c, d): Var(Q) = 1/18; V2 advantages
    [0, .25, -.25] → 3/4; V1 = 0.5 R_0 → [.5, 0, 0] → 1; BRPO = (V1 + V2)/2 → [.25, .125, -.125] → 7/16.
    Summaries weigh budgets by their 4 and 3 traces: V2 (4·10/11 + 3·3/4)/7 = 37/44, BRPO 871/1232, V1 1.
    """
    config = BRPOConfig(b_max=8, num_budgets=2, num_summaries=1)
    budgets = (4, 8)
    long_summaries = [[[40, EOS]], [[41, EOS]]]
    specs = {
        ("p0", 0): (list(range(20, 28)), "length", long_summaries, [0, 1]),
        ("p0", 1): ([20, 21, THINK_END], "think_end", [[[40, EOS], [41, EOS]]], [1, 1]),
        ("p1", 0): (list(range(20, 28)), "length", long_summaries, [1, 1]),
        ("p1", 1): (list(range(20, 28)), "length", long_summaries, [0, 0]),
    }
    traces, verdicts = [], {}
    for (problem, index), (thinking, reason, summaries, rewards) in specs.items():
        trace = _trace(problem, index, thinking, reason, budgets, summaries)
        traces.append(trace)
        ids = [trace.summary_id(c, s) for c, cut in enumerate(trace.cuts) for s in range(len(cut.summaries))]
        verdicts[trace.id] = {sid: verdict(r) for sid, r in zip(ids, rewards, strict=True)}
    metrics = batch_metrics(build_step_batch(traces, verdicts, config, config.budget_prior()), config)
    assert metrics["variance/budget_4/traces"] == 4 and metrics["variance/budget_8/traces"] == 3
    assert metrics["variance/budget_4/v2"] == pytest.approx(10 / 11)
    assert metrics["variance/budget_4/brpo"] == pytest.approx(10 / 11)
    assert metrics["variance/budget_4/v1"] == pytest.approx(1.0)
    assert metrics["variance/budget_8/v2"] == pytest.approx(3 / 4)
    assert metrics["variance/budget_8/v1"] == pytest.approx(1.0)
    assert metrics["variance/budget_8/brpo"] == pytest.approx(7 / 16)
    assert metrics["variance/v2"] == pytest.approx(37 / 44)
    assert metrics["variance/brpo"] == pytest.approx(871 / 1232)
    assert metrics["variance/v1"] == pytest.approx(1.0)


def test_design_example_metrics() -> None:
    """docs/method.md §2.5 table: both traces think to b_max, so every budget keeps both."""
    config = BRPOConfig(b_max=16, num_budgets=4, num_summaries=1)
    traces, verdicts = _step({("p", 0): [0, 0, 1, 1], ("p", 1): [0, 1, 1, 1]})
    metrics = batch_metrics(build_step_batch(traces, verdicts, config, config.budget_prior()), config)
    # Budget 8: Q = [.5, .75] (Var 1/64); BRPO advantages [.03125, .28125] (Var 1/64) → 1;
    # V2 [-.125, .125] → 1. Budgets 12 and 16: both returns equal (.5, then .25): no spread, no ratio.
    assert metrics["variance/budget_8/brpo"] == pytest.approx(1.0)
    assert metrics["variance/budget_8/v2"] == pytest.approx(1.0)
    late = {f"variance/budget_{b}/{name}" for b in (12, 16) for name in ("brpo", "v1", "v2")}
    assert not late & set(metrics)
    assert metrics["reward/budget_4/mean"] == 0 and metrics["reward/budget_8/mean"] == 0.5
    assert metrics["reward/budget_12/mean"] == 1 and metrics["reward/budget_16/mean"] == 1
    assert metrics["anytime/score"] == pytest.approx(0.625) and metrics["anytime/final"] == 1
    assert metrics["anytime/objective"] == pytest.approx(0.625) and metrics["anytime/score_coverage"] == 1
    assert metrics["verdict/correct"] == 5 and metrics["verdict/incorrect"] == 3
    linear = BRPOConfig(b_max=16, num_budgets=4, num_summaries=1, prior=PriorKind.LINEAR)
    metrics = batch_metrics(build_step_batch(traces, verdicts, linear, linear.budget_prior()), linear)
    assert metrics["anytime/objective"] == pytest.approx((0 * 4 + 0.5 * 8 + 1 * 12 + 1 * 16) / 40)
    assert metrics["anytime/score"] == pytest.approx(0.625)  # the uniform grid, whatever the prior
    # An evaluation grid of 2 (8, 16) lies on the run's budgets: mean of 0.5 and 1.
    assert (
        batch_metrics(build_step_batch(traces, verdicts, linear, linear.budget_prior()), linear, [8, 16])[
            "anytime/score"
        ]
        == 0.75
    )


def test_anytime_score_on_the_evaluation_grid_only_where_the_rollout_measured_it() -> None:
    grpo = BRPOConfig(algorithm=Algorithm.GRPO, b_max=16)
    long = _trace("p", 0, list(range(20, 36)), "length", (16,), [[[40, EOS]]])
    short = _trace("p", 1, [20, 21, THINK_END], "think_end", (16,), [[[40, EOS]]])
    verdicts = {t.id: {t.summary_id(0, 0): verdict(1)} for t in (long, short)}
    rewards = torch.tensor([[1.0]])
    # The closed 3-token thought is the same prefix at every budget >= 3; the long one is only known at 16.
    assert [reward_at(short, rewards, b) for b in (4, 8, 12, 16)] == [1.0] * 4
    assert [reward_at(long, rewards, b) for b in (4, 8, 12, 16)] == [None, None, None, 1.0]
    metrics = batch_metrics(
        build_step_batch([long, short], verdicts, grpo, grpo.budget_prior()),
        grpo,
        eval_budgets=[4, 8, 12, 16],
    )
    assert metrics["anytime/score_coverage"] == pytest.approx(5 / 8) and "anytime/score" not in metrics
    metrics = batch_metrics(
        build_step_batch([short], verdicts, grpo, grpo.budget_prior()), grpo, eval_budgets=[4, 8, 12, 16]
    )
    assert metrics["anytime/score"] == 1 and metrics["anytime/score_coverage"] == 1


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
    metrics = batch_metrics(build_step_batch([closed, eos], verdicts, config, config.budget_prior()), config)
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
    assert config.brpo.resolved_loss_normalizer == 8000 + 4 * 4 * 128
    with pytest.raises(ValueError, match="temperature 1"):
        LearnerConfig(old_logprobs=OldLogProbs.ROLLOUT, temperature=0.6)
