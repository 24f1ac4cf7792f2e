"""Response bodies, and JSON integers for request bodies. The request body of `POST /v1/runs` is
`anytime.run_config.RunConfig` itself."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    computed_field,
    model_validator,
)

from anytime.contracts.verify import BudgetReward
from anytime.db import repository
from anytime.db.experiments import ARM_NAME_LENGTH, Experiment, Member, experiment_status
from anytime.db.models import Checkpoint, Run, RunStatus
from anytime.problems import Contamination


def _json_number(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError(f"expected a JSON integer, not {type(value).__name__} {value!r}")
    return value


# An integer as JSON means it: `3` or `3.0` (the same number to JSON Schema, so the OpenAPI's `integer`
# admits both), never `"3"`, `true` or `3.5`. Put it last: `Annotated[int, Field(ge=1), JSON_INTEGER]`
# (bounds after it would not reach the OpenAPI schema).
JSON_INTEGER = BeforeValidator(_json_number)
PositiveJsonInt = Annotated[int, Field(ge=1), JSON_INTEGER]


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    total: int = Field(description="Rows that match the filters (all pages).")
    offset: int
    limit: int


class Items(BaseModel, Generic[Item]):
    items: list[Item]


class RunOut(_FromRow):
    id: str
    name: str | None
    status: RunStatus
    error: str | None = Field(description="What went wrong (failed runs).")
    cancel_requested: bool = Field(
        description="A cancel is pending: the run stops at its next task boundary."
    )
    config: dict[str, Any] = Field(
        description="The validated RunConfig with every default filled in, its sections' fields under their "
        "flat names (b_max, lr, eval_dataset, …; `anytime.run_config.FLAT_FIELDS`), as bodies are written."
    )
    plan: dict[str, Any] | None = Field(
        description="The run's plan as stored when it was created (`anytime.run_plan.RunPlan`): the prior, "
        "the rollout's, learner's and evaluation's settings every job of the run is built from. Null for a "
        "stored config this version no longer validates."
    )
    contamination: Contamination | None = Field(
        description="How many of the evaluation problems are also training problems, measured when the run "
        "was created (null: no evaluation set, or a run created before it was measured)."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mlflow_run_id: str | None
    policy_version: int = Field(description="The policy the workers serve now (0: the initial model).")
    step: int = Field(description="The last committed step (-1: none yet).")
    promoted_checkpoint_id: int | None
    resolved: dict[str, Any] | None = Field(
        default=None,
        description="What the run resolves to (its plan, `RunPlan.resolved`): S, A, baseline, summary mode, "
        "the prior's name, budgets and probabilities, the loss normaliser, the evaluation grid and k, the "
        "learner's knobs. Null for a stored config this version no longer validates.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_stored(cls, data: Any) -> Any:
        """The row's config in its flat view, its plan (a run stored before plans were: resolved now) and
        what the plan resolves to, each validated once."""
        if isinstance(data, Run):
            try:
                config, plan = data.run_config(), data.run_plan()
            except ValidationError:
                return {**_row_fields(data), "plan": None, "resolved": None}
            return {
                **_row_fields(data),
                "config": config.flat(),
                "plan": plan.model_dump(mode="json"),
                "resolved": plan.resolved(),
            }
        return data

    @computed_field(  # type: ignore[prop-decorator]
        description="What the run's user should know, e.g. evaluation problems that are training ones too."
    )
    @property
    def warnings(self) -> list[str]:
        warning = None if self.contamination is None else self.contamination.warning()
        return [] if warning is None else [warning]


def _row_fields(run: Run) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunOut.model_fields if name not in ("plan", "resolved")}


class BudgetOut(_FromRow):
    index: int
    tokens: int = Field(description="Thinking budget b_j in tokens.")
    probability: float = Field(description="Prior probability p_j.")


class StepOut(_FromRow):
    step: int
    policy_version: int
    metrics: dict[str, float | None]
    created_at: datetime


class RewardOut(BudgetReward):
    """The verify task's record as stored, with its step; `cut` keeps its older wire name `cut_length`."""

    model_config = ConfigDict(from_attributes=True)

    cut: int = Field(serialization_alias="cut_length", description="Thinking tokens kept for this budget.")
    step: int


class CheckpointOut(BaseModel):
    id: int
    policy_version: int
    step: int
    path: str
    created_at: datetime
    exists: bool = Field(
        description="The folder is still on disk; false once the learner's checkpoint retention deleted it "
        "(such a checkpoint cannot be promoted or served)."
    )

    @classmethod
    def of(cls, row: Checkpoint) -> CheckpointOut:
        """The row, with whether its folder is still there (read now from the filesystem)."""
        return cls(
            id=row.id,
            policy_version=row.policy_version,
            step=row.step,
            path=row.path,
            created_at=row.created_at,
            exists=repository.checkpoint_on_disk(row.path),
        )


class EvaluationOut(_FromRow):
    """One evaluation. Sampled ones carry n, k, the temperature, the seed and 95 % bootstrap intervals over
    problems; evaluations from before sampling (greedy, one trace) have null n, seed and intervals."""

    policy_version: int
    step: int
    budgets: list[int] = Field(description="The evaluation grid (tokens).")
    accuracy: list[float] = Field(description="Accuracy at each budget: the mean over problems × samples.")
    anytime_score: float | None = Field(description="The mean accuracy over the grid (uniform prior).")
    accuracy_ci_low: list[float] | None = Field(description="Lower 95 % bound at each budget.")
    accuracy_ci_high: list[float] | None = Field(description="Upper 95 % bound at each budget.")
    anytime_score_ci_low: float | None
    anytime_score_ci_high: float | None
    num_problems: int | None = Field(description="n: problems evaluated (what the bootstrap resamples).")
    num_samples: int | None = Field(description="k: thinking traces per problem, one summary per budget.")
    temperature: float | None = Field(description="Sampling temperature; 0: greedy.")
    seed: int | None = Field(description="The sampling seed.")
    created_at: datetime


class CurveOut(BaseModel):
    run_id: str
    evaluations: list[EvaluationOut] = Field(description="Accuracy vs budget, one curve per evaluation.")


# ------------------------------------------------------------------------------------------ experiments

MAX_ARMS = 16
MAX_SEEDS = 32
MAX_EXPERIMENT_RUNS = 256
# Set by the experiment for every run, never by the spec: each run's name, and its seeds (the training
# seed and the evaluation sampling seed both come from the experiment's seed, so arms of one seed are paired).
SET_BY_EXPERIMENT = ("name", "seed", "eval_seed")

ArmName = Annotated[
    str, StringConstraints(pattern=rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{ARM_NAME_LENGTH - 1}}}$")
]
ExperimentSeed = Annotated[int, Field(ge=0, le=2**32 - 1), JSON_INTEGER]


class ExperimentSpec(BaseModel):
    """The body of `POST /v1/experiments`: a base run config, named arms of overrides, and seeds. Each arm ×
    seed becomes one run whose config is `base` ∪ the arm's overrides, with `seed` and `eval_seed` set to
    the seed and `name` to `<name>/<arm>/seed<seed>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f/]+$",  # no control characters; "/" separates a run name's parts
        description="A label; the runs are named `<name>/<arm>/seed<seed>`.",
    )
    base: dict[str, Any] = Field(
        description="A RunConfig's fields shared by every arm (model, dataset, eval_dataset, …); "
        "name, seed and eval_seed are set by the experiment."
    )
    arms: dict[ArmName, dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_ARMS,
        description="Arm name → RunConfig fields that differ from `base` (e.g. algorithm, baseline, prior). "
        "Fields that decide which problems a run trains and is evaluated on must be the same in every arm.",
    )
    seeds: list[ExperimentSeed] = Field(
        min_length=1, max_length=MAX_SEEDS, description="One run per arm and seed; arms of a seed are paired."
    )
    reference: ArmName | None = Field(
        default=None, description="The arm the others are compared against; unset: the first arm."
    )

    @model_validator(mode="after")
    def _valid(self) -> ExperimentSpec:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct; got {self.seeds}")
        total = len(self.arms) * len(self.seeds)
        if total > MAX_EXPERIMENT_RUNS:
            raise ValueError(
                f"{len(self.arms)} arms × {len(self.seeds)} seeds = {total} runs; at most "
                f"{MAX_EXPERIMENT_RUNS}: use fewer arms or seeds"
            )
        if self.reference is not None and self.reference not in self.arms:
            raise ValueError(f"reference {self.reference!r} is not an arm (arms: {', '.join(self.arms)})")
        for where, fields in [("base", self.base), *((f"arm {a}", o) for a, o in self.arms.items())]:
            taken = [f for f in SET_BY_EXPERIMENT if f in fields]
            if taken:
                raise ValueError(
                    f"{where} sets {', '.join(taken)}: the experiment sets each run's name, and its seed and "
                    "eval_seed from `seeds` (so the arms of a seed are paired); remove them"
                )
        return self

    @property
    def reference_arm(self) -> str:
        return self.reference or next(iter(self.arms))


class ExperimentRunOut(BaseModel):
    run_id: str
    arm: str
    seed: int
    name: str | None
    status: RunStatus
    error: str | None
    step: int = Field(description="The run's last committed step (-1: none yet).")
    steps: int = Field(description="The run's steps in all.")
    policy_version: int
    mlflow_run_id: str | None

    @classmethod
    def of(cls, member: Member) -> ExperimentRunOut:
        run = member.run
        return cls(
            run_id=run.id,
            arm=member.arm,
            seed=member.seed,
            name=run.name,
            status=run.status,
            error=run.error,
            step=run.step,
            steps=int(run.config.get("steps", 0)),
            policy_version=run.policy_version,
            mlflow_run_id=run.mlflow_run_id,
        )


class ExperimentOut(BaseModel):
    id: str
    name: str
    status: RunStatus = Field(
        description="From its runs: queued while all are queued, running while any is queued or running; "
        "once all ended: succeeded if all did, else failed if any failed, else cancelled."
    )
    reference: str = Field(description="The arm the others are compared against.")
    arms: list[str]
    seeds: list[int]
    spec: dict[str, Any] = Field(description="The spec as posted (reference filled in).")
    created_at: datetime
    mlflow_run_id: str | None = Field(description="The MLflow parent run of the experiment's runs.")
    runs: list[ExperimentRunOut] = Field(description="One per arm × seed, by arm then seed.")

    @classmethod
    def of(cls, experiment: Experiment, members: list[Member]) -> ExperimentOut:
        return cls(
            id=experiment.id,
            name=experiment.name,
            status=experiment_status(m.run.status for m in members),
            reference=experiment.reference,
            arms=list(experiment.spec["arms"]),
            seeds=[int(s) for s in experiment.spec["seeds"]],
            spec=experiment.spec,
            created_at=experiment.created_at,
            mlflow_run_id=experiment.mlflow_run_id,
            runs=[ExperimentRunOut.of(m) for m in members],
        )
