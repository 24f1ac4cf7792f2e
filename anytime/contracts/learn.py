"""The `learn` queue's task: one learner step, a checkpoint per policy version (`services.learner.worker`).

`LearnerSection` is a run's `learner:` knobs (the optimizer, batching, precision, checkpoints);
`LearnerConfig` is what the task carries: those knobs and the learner's part of the run's plan (the
algorithm, its resolved prior, the evaluation grid). Defaults are the paper's (docs/method.md §5.2): AdamW
with lr 1e-6 constant, betas (0.9, 0.999), weight decay 0.01, grad-norm clip 1; 2 optimizer steps per
rollout batch; old log-probs recomputed on the packed tree; the Dr.GRPO constant normaliser
(`BRPOConfig.loss_normalizer`, one for every arm compared). Torch-free, so the API can validate it.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.budgets import BudgetPrior
from anytime.brpo.config import BRPOConfig
from anytime.queues import Queue, task_name
from anytime.samples import RolloutSample

LEARN_TASK = task_name(Queue.LEARN, "step")


class OldLogProbs(StrEnum):
    """Where the PPO ratio's denominator comes from."""

    RECOMPUTE = "recompute"  # one no-grad pass of the learner's model over the packed trees (the paper)
    ROLLOUT = "rollout"  # the engine's recorded log-probs: no extra pass, but engine numerics leak in


Precision = Literal["auto", "fp32", "bf16"]
SaveDtype = Literal["auto", "float32", "bfloat16", "float16"]


class LearnerSection(BaseModel):
    """A run's `learner:` section: the optimiser, batching, precision and checkpoint knobs, each declared
    here once with the paper's default (docs/method.md §5.2). The learner's job gets them inside
    `LearnerConfig`, with the parts of the run's plan it needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(default=1e-6, gt=0, le=1)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=0.01, ge=0)
    grad_clip: float = Field(default=1.0, gt=0, description="max global grad norm per optimizer step")
    warmup_steps: int = Field(default=0, ge=0, description="linear lr warm-up (optimizer steps); 0: constant")
    mini_batches: int = Field(default=2, ge=1, description="optimizer steps per rollout batch (the paper: 2)")
    micro_batch_tokens: int = Field(
        default=30_720, gt=0, description="packed tokens per forward (the paper: 30720 per GPU)"
    )
    pad_to_token_budget: bool = Field(
        default=False,
        description="pad every micro-batch to exactly micro_batch_tokens (fixed shapes: no flex recompiles)",
    )
    old_logprobs: OldLogProbs = OldLogProbs.RECOMPUTE
    step_without_signal: bool = Field(
        default=True,
        description="step the optimizer on a mini-batch whose trainable tokens all have advantage 0, as the "
        "authors' trainer does (AdamW's momentum and weight decay still move the weights); false: skip it. "
        "One setting for every compared arm: saturated GRPO groups hit it more often",
    )
    behaviour_weight_cap: float = Field(
        default=2.0,
        gt=1,
        description="truncation of the decoupled-PPO behaviour weight π_learner/π_rollout on the tokens of "
        "stale trajectories (rollout max_staleness >= 1); 2 as truncated importance sampling (TIS) uses for "
        "the engine/learner mismatch: a token's weight stays within 2x a fresh token's",
    )
    precision: Precision = Field(default="auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    gradient_checkpointing: bool | None = Field(default=None, description="unset: on for CUDA, off on CPU")
    save_dtype: SaveDtype = Field(
        default="auto",
        description="dtype of the checkpoints' model folder (vLLM serves it); auto: the initial model's",
    )
    keep_last: int = Field(default=3, ge=1, description="complete checkpoints kept (older ones deleted)")
    keep_every: int | None = Field(default=None, ge=1, description="also keep every policy version k·N")

    @model_validator(mode="after")
    def _check(self) -> LearnerSection:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"AdamW betas must lie in [0, 1) (the paper: 0.9, 0.999); got {self.betas}")
        return self


class LearnerConfig(LearnerSection):
    """What one learner step needs: the run's `learner:` knobs (inherited, declared once in
    `LearnerSection`) and the parts of the run's plan the learner reads — the algorithm, the thinking
    prior it was resolved to (`prior`: the learner never re-derives it), the rollout's sampling
    temperature and staleness bound, the evaluation grid of the training log and the seed.

    `prior` and `loss_normalizer` may be left out by code that builds a config directly (benchmarks,
    tests): they are then the algorithm's (`BRPOConfig.budget_prior`, `.resolved_loss_normalizer`),
    resolved here once.
    """

    brpo: BRPOConfig = BRPOConfig()
    prior: BudgetPrior
    loss_normalizer: int = Field(
        gt=0, description="tokens per tree in the seq_sum_const denominator, as the plan resolved it"
    )
    temperature: float = Field(default=1.0, gt=0, description="the rollout's sampling temperature")
    max_staleness: int = Field(
        default=0, ge=0, description="accept trajectories this many policy versions older than the learner"
    )
    eval_budgets: tuple[int, ...] | None = Field(
        default=None,
        description="the run's evaluation grid: the training-log `anytime/score` is its uniform mean, so "
        "arms with different budget priors compare; unset: the run's own budgets",
    )
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _resolve_plan_facts(cls, data: Any) -> Any:
        if not isinstance(data, dict) or (
            data.get("prior") is not None and data.get("loss_normalizer") is not None
        ):
            return data
        brpo = data.get("brpo", BRPOConfig())
        brpo = brpo if isinstance(brpo, BRPOConfig) else BRPOConfig.model_validate(brpo)
        prior = data.get("prior")
        normalizer = data.get("loss_normalizer")
        return {
            **data,
            "brpo": brpo,
            "prior": brpo.budget_prior() if prior is None else prior,
            "loss_normalizer": brpo.resolved_loss_normalizer if normalizer is None else normalizer,
        }

    @model_validator(mode="after")
    def _check_sampling(self) -> LearnerConfig:
        if self.old_logprobs is OldLogProbs.ROLLOUT and self.temperature != 1.0:
            raise ValueError(
                "old_logprobs 'rollout' needs temperature 1: engines record the untempered distribution's "
                f"log-probs, which is not the sampling policy at temperature {self.temperature}; "
                "use old_logprobs 'recompute'"
            )
        return self


class LearnRequest(BaseModel):
    """The task's keyword arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    step: int = Field(ge=0, description="The run step whose trajectories to train on.")
    policy_version: int = Field(ge=1, description="The version this step produces (the learner's + 1).")
    checkpoint_root: Path = Field(description="The run's checkpoint folder (policy-NNNNNN inside).")
    model_dir: Path = Field(description="The run's initial model: policy version 0.")
    config: LearnerConfig = Field(description="The learner's knobs and its part of the run's plan.")
    sample_problems: list[str] = Field(
        default_factory=list,
        description="Problems whose traces the result shows in full (`samples`), with their advantages.",
    )


class LearnResult(BaseModel):
    run_id: str
    step: int
    policy_version: int
    checkpoint: str = Field(description="The checkpoint folder of the new version.")
    model_dir: str = Field(description="Its Hugging Face folder: what the rollout workers reload.")
    applied: bool = Field(description="False when the version existed already (a re-delivered task).")
    metrics: dict[str, float]
    samples: list[RolloutSample] = Field(
        default_factory=list, description="The traces of the request's `sample_problems`, readable."
    )
