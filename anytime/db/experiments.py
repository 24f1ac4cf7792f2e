"""Experiments: paired arms × seeds of ordinary runs, and the reads and writes the API and the driver need.

An experiment is a row with its validated spec (the REST body, `services.api.schemas.ExperimentSpec`, as JSON)
and one `experiment_runs` row per member run naming its arm and seed. The runs themselves are plain `runs`
rows created by `repository.create_run`, driven like any other; the experiment only groups them. Its status
is not stored: it follows its runs (`experiment_status`). Like `repository`, no function here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from anytime.db import repository
from anytime.db.base import Base
from anytime.db.models import Run, RunStatus, UTCDateTime, new_run_id, utcnow
from anytime.problems import Contamination
from anytime.run_config import RunConfig

ARM_NAME_LENGTH = 64


class Experiment(Base):
    """Arms × seeds of runs compared in pairs; `reference` is the arm the others are compared against, and
    `mlflow_run_id` the MLflow parent run of the member runs (None when MLflow was unreachable)."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_run_id)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    reference: Mapped[str] = mapped_column(String(ARM_NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))


class ExperimentRun(Base):
    """Run `run_id` is the experiment's `arm` at `seed` (a run belongs to at most one experiment)."""

    __tablename__ = "experiment_runs"
    __table_args__ = (
        UniqueConstraint("experiment_id", "arm", "seed", name="uq_experiment_runs_experiment_id_arm_seed"),
    )

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    experiment_id: Mapped[str] = mapped_column(String(32), ForeignKey("experiments.id", ondelete="CASCADE"))
    arm: Mapped[str] = mapped_column(String(ARM_NAME_LENGTH))
    seed: Mapped[int] = mapped_column(BigInteger)  # RunConfig seeds go up to 2**32 - 1


class ExperimentNotFound(LookupError):
    def __init__(self, experiment_id: str) -> None:
        super().__init__(f"experiment {experiment_id} not found")
        self.experiment_id = experiment_id


@dataclass(frozen=True)
class Member:
    """One run of an experiment: its arm, its seed and the run row."""

    arm: str
    seed: int
    run: Run


@dataclass(frozen=True)
class PlannedRun:
    """A run to create: `config` is the arm's resolved config at `seed`; `contamination` what the door
    measured of its evaluation set (stored on the run, as `POST /v1/runs` stores it)."""

    arm: str
    seed: int
    config: RunConfig
    contamination: Contamination | None = None


def experiment_status(statuses: Iterable[RunStatus]) -> RunStatus:
    """The experiment's status from its runs': queued while all are queued; running while any is queued or
    running; once all have ended, succeeded if all succeeded, else failed if any failed (a failure is never
    hidden behind a cancel), else cancelled."""
    seen = [RunStatus(s) for s in statuses]
    if not seen:
        raise ValueError("an experiment has at least one run")
    if all(s is RunStatus.QUEUED for s in seen):
        return RunStatus.QUEUED
    if any(not s.finished for s in seen):
        return RunStatus.RUNNING
    if all(s is RunStatus.SUCCEEDED for s in seen):
        return RunStatus.SUCCEEDED
    return RunStatus.FAILED if RunStatus.FAILED in seen else RunStatus.CANCELLED


def create_experiment(
    session: Session,
    experiment_id: str,
    name: str,
    spec: dict[str, Any],
    reference: str,
    planned: Sequence[PlannedRun],
    mlflow_run_id: str | None = None,
) -> tuple[Experiment, list[Member]]:
    """The experiment and one queued run per planned (arm, seed), each through `repository.create_run` (what
    `POST /v1/runs` stores); flushed, not committed, so all of it lands in the caller's one commit."""
    experiment = Experiment(
        id=experiment_id, name=name, spec=spec, reference=reference, mlflow_run_id=mlflow_run_id
    )
    session.add(experiment)
    session.flush()
    members = []
    for item in planned:
        run = repository.create_run(session, item.config, item.contamination)
        session.add(ExperimentRun(run_id=run.id, experiment_id=experiment.id, arm=item.arm, seed=item.seed))
        members.append(Member(item.arm, item.seed, run))
    session.flush()
    return experiment, members


def get_experiment(session: Session, experiment_id: str) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def require_experiment(session: Session, experiment_id: str) -> Experiment:
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise ExperimentNotFound(experiment_id)
    return experiment


def list_experiments(session: Session, offset: int = 0, limit: int = 50) -> tuple[list[Experiment], int]:
    """Newest first; `total` counts them all."""
    query = select(Experiment).order_by(Experiment.created_at.desc(), Experiment.id.desc())
    return repository._page(session, query, offset, limit)


def members_of(session: Session, experiment_ids: Sequence[str]) -> dict[str, list[Member]]:
    """Each experiment's runs (read fresh), by experiment id, ordered by arm as the spec lists the arms, then
    by seed as it lists the seeds."""
    query = (
        select(ExperimentRun, Run)
        .join(Run, Run.id == ExperimentRun.run_id)
        .where(ExperimentRun.experiment_id.in_(list(experiment_ids)))
    )
    found: dict[str, list[Member]] = {eid: [] for eid in experiment_ids}
    for link, run in session.execute(query, execution_options={"populate_existing": True}).tuples():
        found[link.experiment_id].append(Member(link.arm, int(link.seed), run))
    for eid, members in found.items():
        spec = session.get(Experiment, eid)
        if spec is not None:
            found[eid] = sorted(members, key=_spec_order(spec.spec))
    return found


def members(session: Session, experiment_id: str) -> list[Member]:
    return members_of(session, [experiment_id])[experiment_id]


def set_mlflow_run_id(session: Session, experiment_id: str, mlflow_run_id: str) -> Experiment:
    experiment = require_experiment(session, experiment_id)
    experiment.mlflow_run_id = mlflow_run_id
    session.flush()
    return experiment


def parent_mlflow_run_id(session: Session, run_id: str) -> str | None:
    """The MLflow parent run of `run_id`'s experiment; None when the run is in none (or it has no parent)."""
    query = (
        select(Experiment.mlflow_run_id)
        .join(ExperimentRun, ExperimentRun.experiment_id == Experiment.id)
        .where(ExperimentRun.run_id == run_id)
    )
    return session.scalars(query).one_or_none()


def _spec_order(spec: dict[str, Any]) -> Any:
    arms = {name: i for i, name in enumerate(spec.get("arms", {}))}
    seeds = {int(seed): i for i, seed in enumerate(spec.get("seeds", []))}

    def key(member: Member) -> tuple[int, int, str]:
        return (arms.get(member.arm, len(arms)), seeds.get(member.seed, len(seeds)), member.arm)

    return key
