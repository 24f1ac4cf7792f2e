"""Per-step metrics as one flat dict of floats with MLflow-legal slash names.

Batch metrics (from rewards and trajectories, before any update):
- `reward/mean`, `reward/budget_{b}/mean`: mean reward of the summaries at budget b (the accuracy curve);
- `anytime/score`: the evaluation's anytime score on the step's traces — the uniform-weight mean over the
  evaluation grid `b_max * k / S_eval` of the mean reward there, so arms with different priors and budget
  supports compare. A trace's reward at grid budget b is its reward at the smallest run budget `b_j >= b`
  when that budget summarised the same prefix (`min(b_j, len(z)) == min(b, len(z))`: b is one of the
  run's budgets, or the trace ended by b); `anytime/score_coverage` is the share of (trace, grid budget)
  pairs measured that way, and `anytime/score` is left out below 1 (e.g. GRPO's single budget cannot say
  what a long trace would have scored at a quarter of it). Without `eval_budgets` the grid is the run's
  own budgets (uniform weights);
- `anytime/objective`: `sum_j p_j * reward/budget_{b_j}/mean` under the run's prior (what it optimises);
  `anytime/final`: the reward at `b_max`;
- `thinking/length_mean`, `thinking/closed_share` (traces that wrote `</think>`), `thinking/eos_share`;
- `summary/length_mean`, `summary/eos_share`;
- `variance/budget_{b}/{brpo|v1|v2}`: the paper's Figure 3 ratio `Var(Q − V)/Var(Q)` over the traces that
  still think at budget b (`anytime.brpo.variance`), for all three baselines whatever the run's own;
  `variance/budget_{b}/traces`: that mask's size; `variance/{brpo|v1|v2}`: the mask-count-weighted mean
  of the defined per-budget ratios. A ratio is left out where it is undefined (fewer than 2 masked traces,
  or every masked trace earned the same return), rather than reported as a number it is not;
- `advantage/…`, `verdict/{status}`, `batch/…`;
- `staleness/mean`, `staleness/max`: the learner's policy version minus each trajectory's (0 on-policy;
  up to `max_staleness` when the rollout runs ahead of the learner).
The update's own metrics (`policy/…`, `loss/…`, `optim/…`) are `update.UpdateStats`'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from anytime.brpo.advantages import (
    ThinkingInput,
    brpo_baseline,
    budget_returns,
    group_baseline,
    history_baseline,
)
from anytime.brpo.budgets import BudgetPrior
from anytime.brpo.config import BRPOConfig, ThinkingBaseline
from anytime.brpo.tokens import TokenRole
from anytime.brpo.variance import (
    PAPER_BASELINES,
    ProblemReturns,
    masked_counts,
    summary_ratio,
    thinking_mask,
    variance_ratios,
)
from anytime.metric_names import (
    budget_reward_metric,
    masked_traces_metric,
    variance_ratio_metric,
    variance_summary_metric,
)
from anytime.trajectory import Trajectory
from services.learner.batch import StepBatch

_BASELINES: Mapping[ThinkingBaseline, Callable[[ThinkingInput], Tensor]] = {
    ThinkingBaseline.BRPO: brpo_baseline,
    ThinkingBaseline.V1: history_baseline,
    ThinkingBaseline.V2: group_baseline,
}


def problem_returns(
    rewards: Tensor, lengths: Sequence[int], config: BRPOConfig, prior: BudgetPrior
) -> ProblemReturns:
    """One problem's returns, the three paper baselines and the thinking mask, as lists.

    rewards: [G, S, A] summary rewards; lengths: [G] thinking tokens of each trace; prior: the run's.
    """
    scores = rewards.double().mean(-1)[None]  # [1, G, S]
    probs = torch.tensor(prior.probs, dtype=torch.float64)
    x = ThinkingInput(scores, probs, budget_returns(scores, probs), config.discount)
    return ProblemReturns(
        returns=x.returns[0].tolist(),
        baselines={b.value: _BASELINES[b](x)[0].tolist() for b in PAPER_BASELINES},
        mask=[thinking_mask(length, prior.budgets) for length in lengths],
    )


def _variance_metrics(batch: StepBatch, config: BRPOConfig) -> dict[str, float]:
    problems = [
        problem_returns(g.rewards, [len(t.thinking_ids) for t in g.trajectories], config, batch.prior)
        for g in batch.groups
    ]
    returns = [row for p in problems for row in p.returns]
    mask = [row for p in problems for row in p.mask]
    counts = masked_counts(mask)
    budgets = batch.prior.budgets
    metrics = {masked_traces_metric(b): float(n) for b, n in zip(budgets, counts, strict=True)}
    for baseline in PAPER_BASELINES:
        name = baseline.value
        ratios = variance_ratios(returns, [row for p in problems for row in p.baselines[name]], mask)
        for budget, ratio in zip(budgets, ratios, strict=True):
            if ratio is not None:
                metrics[variance_ratio_metric(budget, name)] = ratio
        overall = summary_ratio(ratios, counts)
        if overall is not None:
            metrics[variance_summary_metric(name)] = overall
    return metrics


def reward_at(trajectory: Trajectory, rewards: Tensor, budget: int) -> float | None:
    """A trace's mean reward at `budget` from its rollout, or None when no run budget summarised that prefix.

    rewards: [S, A] at the run's budgets `trajectory.budgets`.
    """
    length = len(trajectory.thinking_ids)
    for j, run_budget in enumerate(trajectory.budgets):
        if run_budget >= budget:
            same_prefix = min(run_budget, length) == min(budget, length)
            return float(rewards[j].mean()) if same_prefix else None
    return None


def _anytime_metrics(batch: StepBatch, grid: Sequence[int]) -> dict[str, float]:
    measured = [
        [reward_at(t, g.rewards[i], budget) for budget in grid]
        for g in batch.groups
        for i, t in enumerate(g.trajectories)
    ]
    known = [value for row in measured for value in row if value is not None]
    metrics = {"anytime/score_coverage": len(known) / max(len(measured) * len(grid), 1)}
    if len(known) == len(measured) * len(grid):
        per_budget = [sum(row[k] or 0.0 for row in measured) / len(measured) for k in range(len(grid))]
        metrics["anytime/score"] = sum(per_budget) / len(grid)
    return metrics


def batch_metrics(
    batch: StepBatch, config: BRPOConfig, eval_budgets: Sequence[int] | None = None
) -> dict[str, float]:
    """Everything that depends on the step's data alone (see the module docstring).

    eval_budgets: the run's evaluation grid (`RunPlan.eval_budgets`); unset: the run's own budgets. The
    prior is the one the batch was built with (`StepBatch.prior`, the run's plan's).
    """
    prior = batch.prior
    rewards = batch.rewards  # [traces, S, A]
    per_budget = rewards.mean(dim=(0, 2)).tolist()
    metrics: dict[str, float] = {"reward/mean": float(rewards.mean())}
    for budget, value in zip(prior.budgets, per_budget, strict=True):
        metrics[budget_reward_metric(budget)] = value
    metrics["anytime/objective"] = prior.expected(per_budget)
    metrics["anytime/final"] = per_budget[-1]
    metrics.update(_anytime_metrics(batch, eval_budgets or prior.budgets))

    trajectories = batch.trajectories
    count = len(trajectories)
    metrics["thinking/length_mean"] = sum(len(t.thinking_ids) for t in trajectories) / count
    metrics["thinking/closed_share"] = sum(t.finish_reason == "think_end" for t in trajectories) / count
    metrics["thinking/eos_share"] = sum(t.finish_reason == "eos" for t in trajectories) / count
    samples = [s for t in trajectories for cut in t.cuts for s in cut.summaries]
    metrics["summary/length_mean"] = sum(len(s.ids) for s in samples) / len(samples)
    metrics["summary/eos_share"] = sum(s.finish_reason == "eos" for s in samples) / len(samples)

    thinking = torch.cat([g.thinking_adv for g in batch.groups])
    summary = torch.cat([g.summary_adv for g in batch.groups])
    metrics["advantage/thinking_mean"] = float(thinking.mean())
    metrics["advantage/thinking_abs_mean"] = float(thinking.abs().mean())
    metrics["advantage/summary_abs_mean"] = float(summary.abs().mean())
    trained = torch.cat([tree.advantages[tree.trainable] for tree in batch.trees])
    metrics["advantage/nonzero_token_share"] = float((trained != 0).float().mean()) if len(trained) else 0.0

    metrics.update(_variance_metrics(batch, config))
    for status, n in batch.statuses.items():
        metrics[f"verdict/{status}"] = float(n)
    metrics["batch/problems"] = float(len(batch.groups))
    metrics["batch/trajectories"] = float(count)
    metrics["batch/summaries"] = float(len(samples))
    metrics["batch/tokens"] = float(sum(tree.length for tree in batch.trees))
    metrics["batch/trainable_tokens"] = float(sum(int(tree.trainable.sum()) for tree in batch.trees))
    metrics["batch/thinking_tokens"] = float(
        sum(int((tree.roles == TokenRole.THINKING).sum()) for tree in batch.trees)
    )
    return metrics


def staleness_metrics(trajectories: Sequence[Trajectory], policy_version: int) -> dict[str, float]:
    """How many policy versions behind the learner (at `policy_version`) the trajectories were sampled."""
    lags = [policy_version - t.policy_version for t in trajectories]
    return {"staleness/mean": sum(lags) / max(len(lags), 1), "staleness/max": float(max(lags, default=0))}
