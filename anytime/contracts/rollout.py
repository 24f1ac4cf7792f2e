"""The `rollout` queue's task: one step's anytime rollout of a run (`services.rollout.worker`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anytime.brpo.budgets import check_budgets
from anytime.contracts.sampling import SamplingConfig
from anytime.problems import Problem
from anytime.queues import Queue, task_name

GENERATE_TASK = task_name(Queue.ROLLOUT, "generate")


class RolloutConfig(BaseModel):
    """The rollout's part of a run's plan (`anytime.run_plan.RunPlan.rollout`): resolved values, so no
    defaults of its own for what the run config declares (G, A, the summary cap: `BRPOConfig`'s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: tuple[int, ...] = Field(description="The budget support b_1 < … < b_S (thinking tokens).")
    group_size: int = Field(ge=1, description="G: thinking traces per problem.")
    num_summaries: int = Field(ge=1, description="A: summaries per (trace, budget).")
    summary_max_tokens: int = Field(ge=1)
    sampling: SamplingConfig = SamplingConfig()
    summary_sampling: SamplingConfig | None = Field(
        default=None, description="Sampling for summaries; unset uses `sampling`."
    )

    @field_validator("budgets")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return check_budgets(value)

    @property
    def b_max(self) -> int:
        """b_S: the largest budget, where thinking stops."""
        return self.budgets[-1]


class RolloutJob(BaseModel):
    """The task's keyword arguments: one step's rollout of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    step: int = Field(ge=0)
    policy_version: int = Field(ge=0, description="The policy to roll out; its weights are in model_dir.")
    model_dir: Path
    problems: list[Problem] = Field(min_length=1)
    config: RolloutConfig
    seed: int = 0
    accept_newer: bool = Field(
        default=False,
        description="Serve a newer policy version than `policy_version` when the worker holds one, rather "
        "than refuse: a pipelined run's rollouts may use any version within its staleness bound, and a "
        "fresher one only shrinks the lag (the trajectories record the version that produced them).",
    )


class RolloutResult(BaseModel):
    """What the rollout task returns: the step's trajectory ids (in Redis) and the model facts the
    verifier needs and only the tokenizer knows (so the verifier stays tokenizer-free)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    step: int
    policy_version: int
    trajectory_ids: list[str]
    stored: int = Field(description="Trajectories new in Redis (fewer on a re-run: the store is write-once).")
    think_end_id: int = Field(description="The tokenizer's `</think>` id (ModelFacts.think_end_id).")
    eos_id: int = Field(description="The tokenizer's EOS id (ModelFacts.eos_id).")
