"""A training run's configuration as users write it (REST body, `anytime runs create --config FILE.yaml`).

Validated: every field has a default that runs on the embedded CPU default (tiny model, synthetic task); a
bad value is refused with a message that says how to fix it (the API answers 422 with it). What the run
resolves to (S, A, prior, baseline, loss normaliser, the jobs' settings) is its `RunPlan`, built once from
this config (`anytime.run_plan`); validation builds it, so a config that validates has a plan.

The algorithm's fields stay flat, as the REST body has always had them (experiments override them per arm
and pair arms on them): `RunPlan` builds `BRPOConfig` from them, so `BRPOConfig` keeps no defaults of its
own for a run. Where the defaults differ (`b_max` 128 here, the paper's 8000 there; G 4 vs 8; summary cap
32 vs 128; `lr` 1e-5 vs `LearnerConfig`'s 1e-6) these are the run's, sized for the embedded CPU default;
`BRPOConfig`'s and `LearnerConfig`'s are the paper's, for code that builds them directly (benchmarks,
tests). The learner's own knobs (PPO clips, optimiser, mini-batches, checkpoints) are the optional nested
`learner:` section (`LearnerKnobs`); unset, they are the paper's.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import (
    BRPO_NUM_BUDGETS,
    BRPO_NUM_SUMMARIES,
    Algorithm,
    LossAggregation,
    SummaryMode,
    ThinkingBaseline,
)
from anytime.contracts.learn import LearnerKnobs
from anytime.run_plan import DEFAULT_EVAL_SAMPLES, RunPlan

# Evaluation by sampling, as the authors do (PAPER.md §5.2: temperature 0.6); k = 4 fits a 2-core CPU.
AUTHORS_EVAL_TEMPERATURE = 0.6

# b_max becomes budget rows (SQL INTEGER, so no larger); the other token counts and sizes share its bound.
_MAX_SQL_INT = 2**31 - 1


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*$",  # no control characters (PostgreSQL refuses a NUL in text)
        description="A label for lists and MLflow.",
    )
    model: str = Field(min_length=1, description="A Hugging Face model folder, or a hub name (GPU use).")
    dataset: str = Field(min_length=1, description="Training problems: a .jsonl or .json file.")
    algorithm: Algorithm = Algorithm.BRPO
    b_max: int = Field(
        default=128, gt=0, le=_MAX_SQL_INT, description="The largest thinking budget b_S (tokens)."
    )
    num_budgets: int | None = Field(default=None, ge=1, le=64, description="S; unset: the algorithm's.")
    prior: PriorKind | None = None
    probs: tuple[float, ...] | None = Field(
        default=None, min_length=1, description="An explicit prior over the budgets."
    )
    group_size: int = Field(default=4, ge=1, le=64, description="G: thinking traces per problem.")
    num_summaries: int | None = Field(default=None, ge=1, le=64, description="A; unset: the algorithm's.")
    summary_max_tokens: int = Field(default=32, gt=0, le=_MAX_SQL_INT)
    baseline: ThinkingBaseline | None = None
    summary_mode: SummaryMode | None = Field(
        default=None,
        description="brpo (the authors': collapsed budgets share one baseline; A = 1: mean over G) | "
        "brpo_per_budget (each budget's A on their own) | grpo (only the last budget's summary, A = 1); "
        "unset: the algorithm's. The paper's arms: anytime.brpo.config.PAPER_ARMS.",
    )
    aggregation: LossAggregation = LossAggregation.SEQ_SUM_CONST
    loss_normalizer: int | None = Field(
        default=None,
        gt=0,
        le=_MAX_SQL_INT,
        description="seq_sum_const denominator per tree (tokens), one for every compared arm; unset: b_max + "
        f"{BRPO_NUM_BUDGETS * BRPO_NUM_SUMMARIES}·summary_max_tokens (room for the paper's 4 × 4 summaries), "
        "whatever the algorithm, S, A, baseline, prior or summary mode.",
    )
    lr: float = Field(default=1e-5, gt=0, le=1)
    steps: int = Field(default=4, ge=1, le=100_000, description="Policy updates (rollout → verify → learn).")
    problems_per_step: int = Field(default=8, ge=1, le=4096)
    temperature: float = Field(default=1.0, gt=0)
    max_staleness: int = Field(
        default=0,
        ge=0,
        le=8,
        description="k: the rollouts of the next k steps run while the learner trains, on a policy at most k "
        "versions behind (corrected by a truncated importance weight); 0: on-policy, every step waits for "
        "the last update.",
    )
    rollout_shards: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Rollout tasks per step, each whole problem groups, shared by the rollout workers; "
        "unset: one per live rollout worker.",
    )
    eval_dataset: str | None = Field(default=None, description="Held-out problems; unset: no evaluation.")
    eval_interval: int = Field(
        default=0,
        ge=0,
        le=_MAX_SQL_INT,
        description="Evaluate every N steps (and at the end); 0: only before and after.",
    )
    eval_problems: int = Field(default=64, ge=1, le=_MAX_SQL_INT)
    eval_num_budgets: int = Field(default=4, ge=1, le=64, description="Uniform evaluation grid size.")
    eval_samples: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=f"k: traces per eval problem (one summary per trace and budget); unset: "
        f"{DEFAULT_EVAL_SAMPLES}, 1 if greedy.",
    )
    eval_temperature: float = Field(
        default=AUTHORS_EVAL_TEMPERATURE,
        ge=0,
        le=10,
        description="Evaluation sampling temperature (the authors' 0.6); 0: greedy, one trace per problem.",
    )
    eval_seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Eval sampling seed: same seed and policy, same numbers; keep it across compared arms.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="What torch and numpy seeds take.")
    learner: LearnerKnobs | None = Field(
        default=None,
        description="The learner's PPO, optimiser, batching and checkpoint knobs (clip_high, mini_batches, "
        "micro_batch_tokens, weight_decay, …); unset ones are the paper's.",
    )

    @model_validator(mode="after")
    def _valid_algorithm(self) -> RunConfig:
        if self.eval_dataset is not None and self.b_max % self.eval_num_budgets:
            raise ValueError(
                f"b_max ({self.b_max}) must be a multiple of eval_num_budgets ({self.eval_num_budgets}) "
                "so the evaluation budgets are whole tokens"
            )
        return self

    @model_validator(mode="after")
    def _valid_eval_sampling(self) -> RunConfig:
        if self.eval_temperature == 0 and self.eval_samples not in (None, 1):
            raise ValueError(
                f"eval_temperature 0 is greedy: its {self.eval_samples} eval_samples would be one trace "
                "repeated; leave eval_samples unset (or 1), or sample at a temperature above 0 (e.g. 0.6)"
            )
        return self

    @model_validator(mode="after")
    def _valid_staleness(self) -> RunConfig:
        if self.max_staleness and self.temperature != 1.0:
            raise ValueError(
                f"max_staleness {self.max_staleness} needs temperature 1: stale trajectories are corrected "
                "with the engine's recorded log-probs, which are the untempered distribution's, not the "
                f"sampling policy's at temperature {self.temperature}; set max_staleness 0 or temperature 1"
            )
        return self

    @model_validator(mode="after")
    def _valid_plan(self) -> RunConfig:
        self.plan()  # BRPOConfig's and LearnerConfig's validators say what is wrong and how to fix it
        return self

    def plan(self) -> RunPlan:
        """The run as it runs: prior, rollout, learner and evaluation settings (`RunPlan.from_config`)."""
        return RunPlan.from_config(self)

    def resolved_params(self) -> dict[str, object]:
        """The config as it runs, for MLflow params: every field left unset (None) for the algorithm to fill
        in carries the value the run uses (S, A, baseline, summary mode, prior, loss normalizer, eval k),
        with the training and evaluation budgets and the learner's knobs (`RunPlan.resolved`); fields that
        stay unset (no name, no eval set) are left out. `prior` names the prior (`explicit` for given
        probabilities; on one budget every named prior is all mass on b_max, written `base`); `probs` are
        its probabilities. What the user wrote is the run's `config.json` artifact."""
        resolved: dict[str, object] = {**self.model_dump(mode="json"), **self.plan().resolved()}
        return {name: value for name, value in resolved.items() if value is not None}
