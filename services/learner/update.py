"""The update: one PPO step of the policy over a step's packed trees (docs/method.md §2.8–2.10).

`PPOUpdate.run(batch)` takes the `StepBatch` that `batch.build_step_batch` made (one packed tree per
trajectory, advantages on its tokens) and:
1. plans mini-batches of whole problem groups (`split_minibatches`), each cut into micro-batches under the
   token budget (`plan_microbatches`) and collated on the device;
2. old log-probs: a no-grad pass of the current model over the same micro-batches (the paper), or the
   engine's recorded log-probs (`OldLogProbs.ROLLOUT`);
3. per mini-batch: one normaliser for all its micro-batches, then forward + `ppo_loss` + backward per
   micro-batch (gradients accumulate), grad-norm clipping, and one optimizer + scheduler step;
4. returns the token-weighted PPO statistics (`UpdateStats`) and the timings.

With a data-parallel group (`distributed.DataParallel`) each rank takes a share of every mini-batch's
trees and plans its own micro-batches; the normaliser and the "has signal" test stay the whole mini-batch's,
the gradients are summed over the ranks before clipping, and the statistics are merged (the module
docstring of `distributed` says why this equals one process). Without one it is the single-process update.

Simplifications, stated first: one PPO epoch, no shuffling, no reference-policy KL. A mini-batch in which
every trainable token has advantage 0 carries no policy gradient; it is stepped all the same, as the
authors' trainer does (AdamW's momentum and decoupled weight decay still move the weights;
`optim/zero_signal_steps` counts them), unless `step_without_signal` is off, when it is skipped
(`optim/skipped_steps`). A non-finite gradient norm abandons the update (the caller marks the learner
broken).

Stale trajectories (`LearnerConfig.max_staleness` >= 1: the next step's rollout ran while this learner
trained, so it sampled with an older policy version) get the decoupled PPO objective (Hilton et al. 2021,
"Batch size-invariance for policy optimization"; AReaL): the ratio and its clip are taken against the
proximal policy π_prox, the learner's weights before this update (the recomputed old log-probs, exactly as
for fresh data), and each token's surrogate is multiplied by the behaviour weight
`w = min(π_prox(token) / π_behav(token), behaviour_weight_cap)`, no gradient through w, where π_behav is the
engine's recorded log-prob of the sampled token. Why not the plain PPO ratio against π_behav: after k
updates the learner has moved from π_behav, so many stale tokens start outside the clip range
[1 - clip_low, 1 + clip_high] and the clipped branch takes their gradient to 0 (the clip also tightens or
loosens by how far the behaviour policy happens to lag): most of the stale data's signal is thrown away.
Decoupled, the trust region is about the update itself (π_θ vs π_prox, as for fresh data), while w corrects
the sampling distribution; truncating w bounds the variance a token the behaviour policy rarely sampled can
add (truncated importance sampling, as TIS uses for the engine/learner mismatch, cap 2 by default).
Only tokens of trajectories older than the learner's version are weighed: tokens of current-version
trajectories keep weight exactly 1, and a micro-batch without stale trees takes today's code path (no
weights passed at all), so `max_staleness = 0` is bit-identical to the on-policy update. With
`OldLogProbs.ROLLOUT` the engine's log-probs already are the ratio's denominator (π_prox = π_behav): no
extra weight is applied. The recorded log-probs are untempered, so the learner refuses stale trajectories
at a temperature other than 1 (`Learner._check_versions`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from anytime.brpo.config import LossAggregation
from anytime.brpo.logprobs import FLEX_BLOCK_SIZE, packed_logprobs
from anytime.brpo.loss import PPOLossConfig, behaviour_weights, ppo_loss
from anytime.brpo.packing import PackedBatch, collate_trees
from anytime.contracts.learn import LearnerConfig, OldLogProbs
from services.learner.batch import StepBatch, rollout_logprobs
from services.learner.distributed import DataParallel
from services.learner.microbatches import plan_microbatches, split_minibatches
from services.learner.trainer_state import TrainerState

# A collated micro-batch on the device and the indices (into the step's trees) of the trees it holds.
MicroBatch = tuple[PackedBatch, list[int]]


@dataclass(frozen=True)
class MiniBatch:
    """One optimizer step's trees (indices into the step's, all ranks') and this rank's micro-batches."""

    trees: list[int]
    micro: list[MicroBatch]


# PPO statistics averaged over trainable tokens (`ppo_loss`'s metric names, kept as they are; no
# `policy/kl_ref`: the learner has no reference policy)
_TOKEN_MEANS = (
    "policy/clip_fraction",
    "policy/clip_fraction_low",
    "policy/clip_fraction_high",
    "policy/approx_kl",
    "policy/ratio_mean",
    "policy/entropy",
)


@dataclass
class UpdateStats:
    """Accumulates micro-batch PPO metrics and optimizer-step results over one learner step."""

    sums: dict[str, float] = field(default_factory=dict)
    tokens: float = 0.0
    minibatch_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    optimizer_steps: int = 0
    skipped_steps: int = 0
    zero_signal_steps: int = 0  # stepped although every advantage was 0
    micro_batches: int = 0
    # behaviour weights over the trainable tokens of stale trajectories: count, sum, truncated count
    stale_tokens: float = 0.0
    behaviour_weight_sum: float = 0.0
    behaviour_truncated: float = 0.0
    _loss: float = 0.0

    def add_microbatch(self, metrics: Mapping[str, Tensor]) -> None:
        tokens = float(metrics["policy/trainable_tokens"])
        self.micro_batches += 1
        self.tokens += tokens
        for name in _TOKEN_MEANS:
            if name in metrics:
                self.sums[name] = self.sums.get(name, 0.0) + float(metrics[name]) * tokens
        self._loss += float(metrics["policy/loss"])

    def add_entropy(self, entropy_sum: float) -> None:
        """Entropy measured in the no-grad old-log-prob pass: a sum over trainable tokens."""
        self.sums["policy/entropy"] = self.sums.get("policy/entropy", 0.0) + entropy_sum

    def add_behaviour_weights(self, weights: Tensor, truncated: Tensor, stale: Tensor) -> None:
        """One micro-batch's behaviour weights [N, T] over its stale trainable tokens (`stale`, bool)."""
        self.stale_tokens += float(stale.sum())
        self.behaviour_weight_sum += float(weights[stale].sum())
        self.behaviour_truncated += float(truncated[stale].sum())

    def end_minibatch(self, grad_norm: float, stepped: bool, has_signal: bool) -> None:
        self.minibatch_losses.append(self._loss)
        self._loss = 0.0
        self.grad_norms.append(grad_norm)
        self.optimizer_steps += int(stepped)
        self.skipped_steps += int(not stepped)
        self.zero_signal_steps += int(stepped and not has_signal)

    @classmethod
    def merged(cls, parts: Sequence[UpdateStats]) -> UpdateStats:
        """The statistics of one update from the ranks' shares of it (the same optimizer steps)."""
        first = parts[0]
        merged = cls(
            grad_norms=list(first.grad_norms),
            optimizer_steps=first.optimizer_steps,
            skipped_steps=first.skipped_steps,
            zero_signal_steps=first.zero_signal_steps,
        )
        merged.minibatch_losses = [
            sum(losses) for losses in zip(*(p.minibatch_losses for p in parts), strict=True)
        ]
        for part in parts:
            for name, value in part.sums.items():
                merged.sums[name] = merged.sums.get(name, 0.0) + value
            merged.tokens += part.tokens
            merged.micro_batches += part.micro_batches
            merged.stale_tokens += part.stale_tokens
            merged.behaviour_weight_sum += part.behaviour_weight_sum
            merged.behaviour_truncated += part.behaviour_truncated
        return merged

    def as_metrics(self, lr: float) -> dict[str, float]:
        metrics = {name: value / max(self.tokens, 1.0) for name, value in self.sums.items()}
        metrics["loss/policy"] = sum(self.minibatch_losses) / max(len(self.minibatch_losses), 1)
        metrics["optim/grad_norm"] = sum(self.grad_norms) / max(len(self.grad_norms), 1)
        metrics["optim/grad_norm_max"] = max(self.grad_norms, default=0.0)
        metrics["optim/lr"] = lr
        metrics["optim/steps"] = float(self.optimizer_steps)
        metrics["optim/skipped_steps"] = float(self.skipped_steps)
        metrics["optim/zero_signal_steps"] = float(self.zero_signal_steps)
        if self.stale_tokens > 0:
            metrics["policy/behaviour_weight_mean"] = self.behaviour_weight_sum / self.stale_tokens
            metrics["policy/behaviour_weight_truncated_fraction"] = (
                self.behaviour_truncated / self.stale_tokens
            )
        return metrics


class PPOUpdate:
    """The PPO step of one learner: its model, config, device placement and trainer state."""

    def __init__(
        self,
        model: Any,
        config: LearnerConfig,
        trainer_state: TrainerState,
        *,
        pad_id: int,
        device: torch.device,
        parallel: DataParallel | None = None,
    ) -> None:
        self.model = model
        self.parallel = parallel
        self.config = config
        self.trainer_state = trainer_state
        self.pad_id = pad_id
        self.device = device
        cuda = device.type == "cuda"
        precision = config.precision if config.precision != "auto" else ("bf16" if cuda else "fp32")
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        # Rows padded to FlexAttention's tile on CUDA, or to the whole budget (fixed shapes, no recompiles).
        self.pad_multiple = FLEX_BLOCK_SIZE if cuda else 1
        if config.pad_to_token_budget:
            self.pad_multiple = -(-config.micro_batch_tokens // self.pad_multiple) * self.pad_multiple

    def run(self, batch: StepBatch, policy_version: int) -> tuple[UpdateStats, dict[str, float]]:
        """Apply the update to the model (at `policy_version`) in place; returns its statistics and
        `perf/`, `batch/` timings. Trees of trajectories older than `policy_version` are stale."""
        stats = UpdateStats()
        plan = self._micro_batches(batch)
        stale = [t.policy_version < policy_version for t in batch.trajectories]
        began = time.perf_counter()
        old, weights = self._old_logprobs(plan, batch, stale, stats)
        old_seconds = time.perf_counter() - began
        loss_config = PPOLossConfig.from_config(self.config.brpo)
        with_entropy = self.config.old_logprobs is OldLogProbs.ROLLOUT
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.trainer_state.optimizer
        began = time.perf_counter()
        for index, (mini, old_logprobs, micro_weights) in enumerate(zip(plan, old, weights, strict=True)):
            normaliser = self._normaliser(batch, mini.trees)
            has_signal = any(
                bool((batch.trees[i].advantages[batch.trees[i].trainable] != 0).any()) for i in mini.trees
            )
            optimizer.zero_grad(set_to_none=True)
            for (m, _), old_lp, weight in zip(mini.micro, old_logprobs, micro_weights, strict=True):
                with self._autocast():
                    out = packed_logprobs(
                        self.model, m, self.config.temperature, with_entropy=with_entropy, wanted=m.trainable
                    )
                result = ppo_loss(
                    out.logprobs,
                    old_lp,
                    m.advantages,
                    m.trainable,
                    loss_config,
                    entropy=out.entropy,
                    normaliser=normaliser,
                    behaviour_weights=weight,
                )
                result.loss.backward()
                stats.add_microbatch(result.metrics)
            if self.parallel is not None:
                self.parallel.reduce_gradients(parameters)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip))
            if not math.isfinite(grad_norm):
                raise FloatingPointError(
                    f"non-finite gradient norm in mini-batch {index}; the update was abandoned"
                )
            stepped = has_signal or self.config.step_without_signal
            if stepped:
                optimizer.step()
                self.trainer_state.scheduler.step()
            stats.end_minibatch(grad_norm, stepped, has_signal)
        optimizer.zero_grad(set_to_none=True)
        if self.parallel is not None:
            stats = UpdateStats.merged(self.parallel.gather(stats))
        update_seconds = time.perf_counter() - began
        tokens = float(sum(tree.length for tree in batch.trees))
        timings = {
            "perf/old_logprobs_s": old_seconds,
            "perf/update_s": update_seconds,
            "perf/update_tokens_per_s": tokens / update_seconds if update_seconds > 0 else 0.0,
            "batch/micro_batches": float(stats.micro_batches),
            "batch/mini_batches": float(len(plan)),
        }
        return stats, timings

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _micro_batches(self, batch: StepBatch) -> list[MiniBatch]:
        """The mini-batches, each with this rank's micro-batches (all of them in one process), collated on
        the device."""
        sizes = [len(g.trajectories) for g in batch.groups]
        plan = []
        for trees in split_minibatches(sizes, self.config.mini_batches):
            mine = trees
            if self.parallel is not None:
                mine = self.parallel.share(trees, [batch.trees[i].length for i in trees])
            lengths = [batch.trees[i].length for i in mine]
            micro = []
            for positions in plan_microbatches(lengths, self.config.micro_batch_tokens):
                ids = [mine[p] for p in positions]
                collated = collate_trees(
                    [batch.trees[i] for i in ids],
                    self.pad_id,
                    multiple_of=self.pad_multiple,
                    max_row_tokens=self.config.micro_batch_tokens,
                )
                micro.append((collated.to(self.device), ids))
            plan.append(MiniBatch(trees, micro))
        return plan

    def _old_logprobs(
        self, plan: list[MiniBatch], batch: StepBatch, stale: Sequence[bool], stats: UpdateStats
    ) -> tuple[list[list[Tensor]], list[list[Tensor | None]]]:
        """Per micro-batch: [N, T] old log-probs (recomputed without grad at the trainable tokens, the only
        ones the loss reads, 0 elsewhere; or the engine's), and the behaviour weights [N, T] of decoupled
        PPO where the micro-batch holds a stale tree (else None)."""
        old: list[list[Tensor]] = []
        weights: list[list[Tensor | None]] = [[None] * len(mini.micro) for mini in plan]
        if self.config.old_logprobs is OldLogProbs.ROLLOUT:
            # π_behav is the ratio's denominator already: stale or not, no extra weight.
            for mini in plan:
                old.append([self._rollout_values(m, ids, batch).to(self.device) for m, ids in mini.micro])
            return old, weights
        # The model stays in train mode: the attention dropout is 0 either way, and transformers recompiles
        # its FlexAttention kernel on every train/eval switch.
        with torch.no_grad(), self._autocast():
            for m, mini in enumerate(plan):
                old.append([])
                for n, (micro, ids) in enumerate(mini.micro):
                    out = packed_logprobs(
                        self.model, micro, self.config.temperature, with_entropy=True, wanted=micro.trainable
                    )
                    assert out.entropy is not None
                    stats.add_entropy(float((out.entropy * micro.trainable).sum()))
                    proximal = out.logprobs.float()
                    old[-1].append(proximal)
                    if any(stale[i] for i in ids):
                        weights[m][n] = self._behaviour_weights(micro, ids, batch, stale, proximal, stats)
        return old, weights

    def _behaviour_weights(
        self,
        micro: PackedBatch,
        ids: Sequence[int],
        batch: StepBatch,
        stale: Sequence[bool],
        proximal: Tensor,
        stats: UpdateStats,
    ) -> Tensor:
        """[N, T] `min(π_prox / π_behav, cap)` on the trainable tokens of the stale trees, 1 elsewhere."""
        stale_ids = [i for i in ids if stale[i]]
        behaviour = self._rollout_values(micro, ids, batch, only=stale_ids).to(self.device)
        in_stale_tree = torch.zeros(micro.shape, dtype=torch.bool)
        for tree_id, place in zip(ids, micro.placements, strict=True):
            if stale[tree_id]:
                in_stale_tree[place.row, place.offset : place.offset + place.length] = True
        mask = in_stale_tree.to(self.device) & micro.trainable
        result = behaviour_weights(proximal, behaviour, mask, self.config.behaviour_weight_cap)
        stats.add_behaviour_weights(result.weights, result.truncated, mask)
        return result.weights

    @staticmethod
    def _rollout_values(
        micro: PackedBatch, ids: Sequence[int], batch: StepBatch, only: Sequence[int] | None = None
    ) -> Tensor:
        """[N, T] on the CPU: the engine's log-probs of the trees `ids` (or those in `only`), 0 elsewhere."""
        values = torch.zeros(micro.shape, dtype=torch.float32)
        for tree_id, place in zip(ids, micro.placements, strict=True):
            if only is None or tree_id in only:
                tree_values = rollout_logprobs(batch.trajectories[tree_id], batch.trees[tree_id])
                values[place.row, place.offset : place.offset + place.length] = tree_values
        return values

    def _normaliser(self, batch: StepBatch, trees: Sequence[int]) -> float:
        """One denominator for all micro-batches of a mini-batch, on every rank (docs/method.md §2.8)."""
        if self.config.brpo.aggregation is LossAggregation.SEQ_SUM_CONST:
            return float(len(trees) * self.config.loss_normalizer)
        return float(max(1, sum(int(batch.trees[i].trainable.sum()) for i in trees)))
