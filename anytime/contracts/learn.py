"""The `learn` queue's task: one learner step, a checkpoint per policy version (`services.learner.worker`).

`LearnerConfig` is the learner's knobs for one run: the algorithm (`BRPOConfig`), the optimizer, batching
and precision. Defaults are the paper's (PAPER.md §4.1, §5.1): AdamW with lr 1e-6 constant, betas
(0.9, 0.999), weight decay 0.01, grad-norm clip 1; 2 optimizer steps per rollout batch; old log-probs
recomputed on the packed tree; the Dr.GRPO constant normaliser (`BRPOConfig.loss_normalizer`, one for every
arm compared). Torch-free, so the API can validate a run's learner config.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.config import BRPOConfig
from anytime.queues import Queue, task_name

LEARN_TASK = task_name(Queue.LEARN, "step")


class OldLogProbs(StrEnum):
    """Where the PPO ratio's denominator comes from."""

    RECOMPUTE = "recompute"  # one no-grad pass of the learner's model over the packed trees (the paper)
    ROLLOUT = "rollout"  # the engine's recorded log-probs: no extra pass, but engine numerics leak in


Precision = Literal["auto", "fp32", "bf16"]
SaveDtype = Literal["auto", "float32", "bfloat16", "float16"]


class LearnerConfig(BaseModel):
    """How the learner turns one step's verified trajectories into the next policy version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    brpo: BRPOConfig = BRPOConfig()
    lr: float = Field(default=1e-6, gt=0)
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
    temperature: float = Field(default=1.0, gt=0, description="the rollout's sampling temperature")
    max_policy_lag: int = Field(
        default=0, ge=0, description="accept trajectories this many policy versions older than the learner"
    )
    behaviour_weight_cap: float = Field(
        default=2.0,
        gt=1,
        description="truncation of the decoupled-PPO behaviour weight π_learner/π_rollout on the tokens of "
        "stale trajectories (max_policy_lag >= 1); 2 as truncated importance sampling (TIS) uses for the "
        "engine/learner mismatch: a token's weight stays within 2x a fresh token's",
    )
    precision: Precision = Field(default="auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    gradient_checkpointing: bool | None = Field(default=None, description="unset: on for CUDA, off on CPU")
    save_dtype: SaveDtype = Field(
        default="auto",
        description="dtype of the checkpoints' model folder (vLLM serves it); auto: the initial model's",
    )
    keep_last: int = Field(default=3, ge=1, description="complete checkpoints kept (older ones deleted)")
    eval_budgets: tuple[int, ...] | None = Field(
        default=None,
        description="the run's evaluation grid: the training-log `anytime/score` is its uniform mean, so "
        "arms with different budget priors compare; unset: the run's own budgets",
    )
    keep_every: int | None = Field(default=None, ge=1, description="also keep every policy version k·N")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> LearnerConfig:
        if self.old_logprobs is OldLogProbs.ROLLOUT and self.temperature != 1.0:
            raise ValueError(
                "old_logprobs 'rollout' needs temperature 1: engines record the untempered distribution's "
                f"log-probs, which is not the sampling policy at temperature {self.temperature}; "
                "use old_logprobs 'recompute'"
            )
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"AdamW betas must lie in [0, 1) (the paper: 0.9, 0.999); got {self.betas}")
        return self


class LearnerKnobs(BaseModel):
    """A run config's optional `learner:` section: the PPO, optimiser, batching and checkpoint knobs a run
    may set. Unset fields keep `LearnerConfig`'s and `BRPOConfig`'s defaults (the paper's), whose validators
    also check the values (`RunPlan.from_config` builds both). The rest of the learner's config comes from the
    run's flat fields (the algorithm, `lr`, `temperature`, `seed`) and its plan (the evaluation grid)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # BRPOConfig's PPO knobs; everything else is LearnerConfig's.
    BRPO_FIELDS: ClassVar[frozenset[str]] = frozenset({"clip_low", "clip_high", "discount"})

    clip_low: float | None = Field(default=None, description="PPO clip below 1 (the paper: 0.2).")
    clip_high: float | None = Field(default=None, description="PPO clip above 1 (asymmetric; 0.2).")
    discount: float | None = Field(default=None, description="V1's discount over earlier budgets (2).")
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    warmup_steps: int | None = None
    mini_batches: int | None = None
    micro_batch_tokens: int | None = None
    pad_to_token_budget: bool | None = None
    old_logprobs: OldLogProbs | None = None
    max_policy_lag: int | None = None
    behaviour_weight_cap: float | None = None
    precision: Precision | None = None
    gradient_checkpointing: bool | None = None
    save_dtype: SaveDtype | None = None
    keep_last: int | None = None
    keep_every: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                flat = [key for key in unknown if key in ("lr", "temperature", "seed")]
                hint = f" ({', '.join(flat)}: a top-level run field)" if flat else ""
                raise ValueError(
                    f"unknown learner key(s) {unknown}{hint}; the learner section takes "
                    f"{', '.join(cls.model_fields)}"
                )
        return data

    def brpo_fields(self) -> dict[str, Any]:
        """The knobs set for `BRPOConfig`."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k in self.BRPO_FIELDS}

    def learner_fields(self) -> dict[str, Any]:
        """The knobs set for `LearnerConfig`."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items() if k not in self.BRPO_FIELDS}


class LearnRequest(BaseModel):
    """The task's keyword arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    step: int = Field(ge=0, description="The run step whose trajectories to train on.")
    policy_version: int = Field(ge=1, description="The version this step produces (the learner's + 1).")
    checkpoint_root: Path = Field(description="The run's checkpoint folder (policy-NNNNNN inside).")
    model_dir: Path = Field(description="The run's initial model: policy version 0.")
    config: LearnerConfig = LearnerConfig()


class LearnResult(BaseModel):
    run_id: str
    step: int
    policy_version: int
    checkpoint: str = Field(description="The checkpoint folder of the new version.")
    model_dir: str = Field(description="Its Hugging Face folder: what the rollout workers reload.")
    applied: bool = Field(description="False when the version existed already (a re-delivered task).")
    metrics: dict[str, float]
