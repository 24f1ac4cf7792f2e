"""Per-step metrics as one flat dict of floats with MLflow-legal slash names.

Batch metrics (from rewards and trajectories, before any update):
- `reward/mean`, `reward/budget_{b}/mean`: mean reward of the summaries at budget b (the accuracy curve);
- `anytime/score`: `sum_j p_j * reward/budget_{b_j}/mean` under the run's prior;
- `thinking/length_mean`, `thinking/closed_share` (traces that wrote `</think>`), `thinking/eos_share`;
- `summary/length_mean`, `summary/eos_share`;
- `variance/run_baseline`, `variance/v2_baseline` (and per budget): Var(Q − baseline) / Var(Q) over every
  (problem, trace) of the step, Q the thinking return — the paper's Figure 3 quantity. Left out where
  Var(Q) = 0 (every trace earned the same return), rather than reported as a number it is not;
- `advantage/…`, `verdict/{status}`, `batch/…`.
Update metrics (`UpdateStats`): token-weighted means of the PPO statistics over all micro-batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from anytime.brpo.advantages import budget_returns, thinking_advantages
from anytime.brpo.config import BRPOConfig, ThinkingBaseline
from anytime.brpo.tokens import TokenRole
from services.learner.batch import StepBatch


def variance_ratio(returns: Tensor, advantages: Tensor) -> float | None:
    """Var(advantage) / Var(return) over all entries; None when the returns do not vary."""
    spread = returns.var(unbiased=False)
    if float(spread) <= 0:
        return None
    return float(advantages.var(unbiased=False) / spread)


def _variance_metrics(batch: StepBatch, config: BRPOConfig) -> dict[str, float]:
    budgets = config.budget_prior().budgets
    probs = list(config.budget_prior().probs)
    metrics: dict[str, float] = {}
    returns_all: list[Tensor] = []
    advantages: dict[str, list[Tensor]] = {"run_baseline": [], "v2_baseline": []}
    for group in batch.groups:
        scores = group.rewards.mean(-1)[None]  # [1, G, S]
        returns_all.append(budget_returns(scores, torch.tensor(probs))[0])
        baselines = (("run_baseline", config.resolved_baseline), ("v2_baseline", ThinkingBaseline.V2))
        for name, baseline in baselines:
            advantages[name].append(thinking_advantages(scores, probs, baseline, config.discount)[0])
    returns = torch.cat(returns_all)  # [traces, S]
    for name, parts in advantages.items():
        adv = torch.cat(parts)
        overall = variance_ratio(returns, adv)
        if overall is not None:
            metrics[f"variance/{name}"] = overall
        for j, budget in enumerate(budgets):
            ratio = variance_ratio(returns[:, j], adv[:, j])
            if ratio is not None:
                metrics[f"variance/budget_{budget}/{name}"] = ratio
    return metrics


def batch_metrics(batch: StepBatch, config: BRPOConfig) -> dict[str, float]:
    """Everything that depends on the step's data alone (see the module docstring)."""
    prior = config.budget_prior()
    rewards = batch.rewards  # [traces, S, A]
    per_budget = rewards.mean(dim=(0, 2)).tolist()
    metrics: dict[str, float] = {"reward/mean": float(rewards.mean())}
    for budget, value in zip(prior.budgets, per_budget, strict=True):
        metrics[f"reward/budget_{budget}/mean"] = value
    metrics["anytime/score"] = prior.expected(per_budget)
    metrics["anytime/final"] = per_budget[-1]

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


# PPO statistics averaged over trainable tokens (ppo_loss's names → ours)
_TOKEN_MEANS = {
    "policy/clip_fraction": "policy/clip_fraction",
    "policy/clip_fraction_low": "policy/clip_fraction_low",
    "policy/clip_fraction_high": "policy/clip_fraction_high",
    "policy/approx_kl": "policy/approx_kl",
    "policy/ratio_mean": "policy/ratio_mean",
    "policy/entropy": "policy/entropy",
    "policy/kl_ref": "policy/kl_ref",
}


@dataclass
class UpdateStats:
    """Accumulates micro-batch PPO metrics and optimizer-step results over one learner step."""

    sums: dict[str, float] = field(default_factory=dict)
    tokens: float = 0.0
    minibatch_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    optimizer_steps: int = 0
    skipped_steps: int = 0
    _loss: float = 0.0

    def add_microbatch(self, metrics: Mapping[str, Tensor]) -> None:
        tokens = float(metrics["policy/trainable_tokens"])
        self.tokens += tokens
        for source, name in _TOKEN_MEANS.items():
            if source in metrics:
                self.sums[name] = self.sums.get(name, 0.0) + float(metrics[source]) * tokens
        self._loss += float(metrics["policy/loss"])

    def add_entropy(self, entropy_sum: float) -> None:
        """Entropy measured in the no-grad old-log-prob pass: a sum over trainable tokens."""
        self.sums["policy/entropy"] = self.sums.get("policy/entropy", 0.0) + entropy_sum

    def end_minibatch(self, grad_norm: float, stepped: bool) -> None:
        self.minibatch_losses.append(self._loss)
        self._loss = 0.0
        self.grad_norms.append(grad_norm)
        self.optimizer_steps += int(stepped)
        self.skipped_steps += int(not stepped)

    def as_metrics(self, lr: float) -> dict[str, float]:
        metrics = {name: value / max(self.tokens, 1.0) for name, value in self.sums.items()}
        metrics["loss/policy"] = sum(self.minibatch_losses) / max(len(self.minibatch_losses), 1)
        metrics["optim/grad_norm"] = sum(self.grad_norms) / max(len(self.grad_norms), 1)
        metrics["optim/grad_norm_max"] = max(self.grad_norms, default=0.0)
        metrics["optim/lr"] = lr
        metrics["optim/steps"] = float(self.optimizer_steps)
        metrics["optim/skipped_steps"] = float(self.skipped_steps)
        return metrics
