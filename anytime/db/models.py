"""The control plane's tables: runs and what they produce (budgets, steps, rewards, checkpoints, evaluations).

Every child row belongs to a run (`run_id`, deleted with it). Rows written by workers have a natural key
(a step, a reward's (step, problem, trace, budget, summary), a checkpoint's policy version), so a task that
runs twice stores its output once (`anytime.db.repository` inserts with ON CONFLICT DO NOTHING).

Times are stored as UTC and always read back timezone-aware (SQLite keeps no offset; `UTCDateTime` adds it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from anytime.db.base import Base
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan

RUN_ID_LENGTH = 16  # hex digits of a uuid4: 64 random bits, short enough to type


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}


def new_run_id() -> str:
    return uuid.uuid4().hex[:RUN_ID_LENGTH]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite returns naive values; they are UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"store timezone-aware datetimes (UTC); got naive {value!r}")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _run_fk() -> ForeignKey:
    return ForeignKey("runs.id", ondelete="CASCADE")


class Run(Base):
    """One training run: its validated config (`RunConfig` as JSON) and where it stands."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_run_id)
    name: Mapped[str | None] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The run's plan (`RunPlan` as JSON), resolved once when the run is created; every job is built from it.
    # NULL only on runs created before plans were stored: `run_plan()` resolves theirs from the config.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # How many evaluation problems are also training problems (`Contamination` as JSON), measured at the door
    # where the API could read both datasets; NULL when it could not (no evaluation set, or older runs).
    contamination: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[RunStatus] = mapped_column(
        Enum(
            RunStatus,
            name="run_status",
            native_enum=False,
            length=16,
            values_callable=lambda statuses: [s.value for s in statuses],
        ),
        default=RunStatus.QUEUED,
        index=True,
    )
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    # The policy the run's workers serve now (0: the initial model) and the last step whose results are
    # committed (-1: none yet); resume continues from here.
    policy_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    step: Mapped[int] = mapped_column(Integer, default=-1, server_default="-1")
    # Set when a checkpoint is promoted for serving (a later issue adds the endpoint and the constraint).
    promoted_checkpoint_id: Mapped[int | None] = mapped_column(Integer)

    budgets: Mapped[list[Budget]] = relationship(
        order_by="Budget.index", cascade="all, delete-orphan", passive_deletes=True
    )

    def run_config(self) -> RunConfig:
        return RunConfig.model_validate(self.config)

    def run_plan(self) -> RunPlan:
        """The stored plan (a run created before plans were stored: its config's, resolved now)."""
        if self.plan is None:
            return RunPlan.from_config(self.run_config())
        return RunPlan.model_validate(self.plan)


class Budget(Base):
    """The run's budget support and prior: `index` j (0-based), `tokens` b_j, `probability` p_j."""

    __tablename__ = "budgets"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(Integer)
    probability: Mapped[float] = mapped_column(Float)


class Step(Base):
    """One committed policy update: the metrics of step `step`, which produced `policy_version`."""

    __tablename__ = "steps"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reward(Base):
    """The verdict on one summary: (step, problem, trace, budget, summary) names it.

    `cut` is the thinking tokens kept for the budget (column `cut_length`, the name the REST response
    shows too); `inserted_start:inserted_end` is the span of the inserted tokens (the forced think-end
    text) in the summary prompt's token ids, i.e.
    `[len(prompt) + cut, len(prompt) + cut + len(inserted))`. `answer` is the extracted answer (None when
    none was found), `status` the verifier's verdict status (correct, incorrect, unparseable, timeout, error).
    """

    __tablename__ = "rewards"
    __table_args__ = (Index("ix_rewards_run_id_budget_index_step", "run_id", "budget_index", "step"),)

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    trace_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    summary_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    cut: Mapped[int] = mapped_column("cut_length", Integer)
    inserted_start: Mapped[int] = mapped_column(Integer)
    inserted_end: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    reward: Mapped[float] = mapped_column(Float)


class Checkpoint(Base):
    """A saved policy: the learner's checkpoint folder for `policy_version` (written after `step`)."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("run_id", "policy_version", name="uq_checkpoints_run_id_policy_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), _run_fk())
    policy_version: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Evaluation(Base):
    """Anytime accuracy of `policy_version` on the eval set: `accuracy[i]` at `budgets[i]` tokens, the mean
    over `num_problems` problems × `num_samples` traces sampled at `temperature` (0: greedy) from `seed`;
    `anytime_score` is their mean over the uniform grid. The `*_ci_low`/`*_ci_high` columns bound 95 %
    bootstrap intervals over problems; `per_problem` maps a problem id to its accuracy at each budget (the
    mean over its samples), for paired comparisons. Rows from before sampled evaluation: greedy, one sample,
    no interval (NULLs)."""

    __tablename__ = "evaluations"
    __table_args__ = (
        UniqueConstraint("run_id", "policy_version", name="uq_evaluations_run_id_policy_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), _run_fk())
    policy_version: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    budgets: Mapped[list[int]] = mapped_column(JSON)
    accuracy: Mapped[list[float]] = mapped_column(JSON)
    anytime_score: Mapped[float | None] = mapped_column(Float)
    num_problems: Mapped[int | None] = mapped_column(Integer)
    num_samples: Mapped[int | None] = mapped_column(Integer)
    temperature: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    accuracy_ci_low: Mapped[list[float] | None] = mapped_column(JSON)
    accuracy_ci_high: Mapped[list[float] | None] = mapped_column(JSON)
    anytime_score_ci_low: Mapped[float | None] = mapped_column(Float)
    anytime_score_ci_high: Mapped[float | None] = mapped_column(Float)
    per_problem: Mapped[dict[str, list[float]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
