"""Reads and writes of the control plane's tables, shared by the API and the run driver (Celery workers).

Transactions: every function takes a `Session` and never commits. The caller commits — a request handler
at the end of the request, a task with `with session_scope(factory) as session:` around its writes — so
several writes land together or not at all.

Status changes are atomic compare-and-set updates (`UPDATE … WHERE status IN (allowed sources)`), so the
API's cancel and the driver's status moves never overwrite each other, on SQLite and PostgreSQL alike.
Worker writes (`record_*`) are idempotent on their natural keys (`INSERT … ON CONFLICT DO NOTHING`):
Celery delivers at least once, and a re-delivered task must not count anything twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from anytime.contracts.evaluation import EvalResult
from anytime.contracts.verify import BudgetReward
from anytime.db.base import Base
from anytime.db.models import (
    Budget,
    Checkpoint,
    Evaluation,
    Reward,
    Run,
    RunStatus,
    Step,
    UTCDateTime,
    new_run_id,
    utcnow,
)
from anytime.problems import Contamination
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan

ModelT = TypeVar("ModelT", bound=Base)

# queued → running → succeeded | failed | cancelled; a queued run can be cancelled (or fail before it
# starts, e.g. when its task cannot load the model); failed and cancelled runs can be queued again (resume).
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
    RunStatus.CANCELLED: frozenset({RunStatus.QUEUED}),
}

# Both dialects' INSERT has `.on_conflict_do_nothing(index_elements=…)`.
_UPSERT_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_INSERT_CHUNK_ROWS = 500  # keeps a multi-row INSERT under SQLite's and PostgreSQL's bound-parameter limits


class RunNotFound(LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


class InvalidTransition(ValueError):
    """A status change the run's current status does not allow (the API answers 409 with this message)."""

    def __init__(self, run_id: str, current: RunStatus, target: RunStatus) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        super().__init__(f"run {run_id} is {current}; it cannot become {target} (from {current}: {allowed})")
        self.run_id = run_id
        self.current = current
        self.target = target


@dataclass(frozen=True)
class SampledEvaluation:
    """How an evaluation was sampled and its bootstrap intervals over problems (see
    `anytime.db.models.Evaluation`); one low and one high per budget."""

    num_problems: int
    num_samples: int
    temperature: float
    seed: int
    accuracy_ci_low: Sequence[float]
    accuracy_ci_high: Sequence[float]
    anytime_score_ci_low: float
    anytime_score_ci_high: float
    per_problem: Mapping[str, Sequence[float]] | None = None

    @classmethod
    def of(cls, result: EvalResult) -> SampledEvaluation:
        """What the evaluate task's result says about its sampling and intervals."""
        return cls(
            num_problems=result.num_problems,
            num_samples=result.num_samples,
            temperature=result.temperature,
            seed=result.seed,
            accuracy_ci_low=result.accuracy_ci_low,
            accuracy_ci_high=result.accuracy_ci_high,
            anytime_score_ci_low=result.anytime_score_ci_low,
            anytime_score_ci_high=result.anytime_score_ci_high,
            per_problem=result.per_problem,
        )


# ---------------------------------------------------------------------------------------------- runs


def create_run(session: Session, config: RunConfig, contamination: Contamination | None = None) -> Run:
    """A queued run with its plan (resolved from `config` here, the one time it is: jobs, `GET /v1/runs/{id}`
    and MLflow read the stored plan) and its budget rows (the plan's prior); flushed, so `run.id` is set
    (the caller commits)."""
    plan = RunPlan.from_config(config)
    prior = plan.prior
    run = Run(
        id=new_run_id(),
        name=config.name,
        config=config.model_dump(mode="json"),
        plan=plan.model_dump(mode="json"),
        contamination=None if contamination is None else contamination.model_dump(mode="json"),
        status=RunStatus.QUEUED,
        cancel_requested=False,
        policy_version=0,
        step=-1,
    )
    run.budgets = [
        Budget(index=j, tokens=tokens, probability=probability)
        for j, (tokens, probability) in enumerate(zip(prior.budgets, prior.probs, strict=True))
    ]
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def require_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def list_runs(
    session: Session, status: RunStatus | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Run], int]:
    """Newest first; `total` counts every run that matches the filter."""
    query = select(Run)
    if status is not None:
        query = query.where(Run.status == RunStatus(status))
    return _page(session, query.order_by(Run.created_at.desc(), Run.id.desc()), offset, limit)


def runs_to_drive(session: Session) -> list[Run]:
    """Runs that should have a driver: queued or running (the rescuer checks which have none)."""
    query = select(Run).where(Run.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))
    return list(session.scalars(query.order_by(Run.created_at)))


def set_status(session: Session, run_id: str, status: RunStatus | str, error: str | None = None) -> Run:
    """Move the run to `status` if its current status allows it (`TRANSITIONS`), else `InvalidTransition`.

    Running sets `started_at` (the first start; a resumed run keeps it); a final status sets `finished_at`
    and stores `error` (what went wrong, for failed); queued again (resume) clears the finish, the error
    and a pending cancel request.
    """
    target = RunStatus(status)
    now = utcnow()
    values: dict[str, Any] = {"status": target}
    if target is RunStatus.RUNNING:
        values["started_at"] = func.coalesce(Run.started_at, literal(now, UTCDateTime()))
    elif target is RunStatus.QUEUED:
        values.update(finished_at=None, error=None, cancel_requested=False)
    else:
        values.update(finished_at=now, error=error)
    sources = [source for source, targets in TRANSITIONS.items() if target in targets]
    run = _update_run(session, run_id, values, Run.status.in_(sources))
    if run is None:
        raise InvalidTransition(run_id, require_run(session, run_id).status, target)
    return run


def request_cancel(session: Session, run_id: str) -> Run:
    """Cancel a queued run now; mark a running one `cancel_requested` (the driver stops it at the next
    task boundary and sets it cancelled). Asking twice is harmless; a finished run is `InvalidTransition`."""
    values = {"status": RunStatus.CANCELLED, "finished_at": utcnow(), "cancel_requested": True}
    run = _update_run(session, run_id, values, Run.status == RunStatus.QUEUED)
    if run is None:
        run = _update_run(session, run_id, {"cancel_requested": True}, Run.status == RunStatus.RUNNING)
    if run is None:
        raise InvalidTransition(run_id, require_run(session, run_id).status, RunStatus.CANCELLED)
    return run


def set_policy_version(session: Session, run_id: str, version: int, step: int) -> Run:
    """Record that `step` is committed and produced `version`. Never moves backwards: a re-delivered
    older task leaves a newer pointer alone."""
    run = _update_run(
        session, run_id, {"policy_version": version, "step": step}, Run.policy_version <= version
    )
    return run if run is not None else require_run(session, run_id)


def set_mlflow_run_id(session: Session, run_id: str, mlflow_run_id: str) -> Run:
    run = _update_run(session, run_id, {"mlflow_run_id": mlflow_run_id})
    if run is None:
        raise RunNotFound(run_id)
    return run


def _update_run(session: Session, run_id: str, values: Mapping[str, Any], *conditions: Any) -> Run | None:
    """Apply `values` to the run if `conditions` hold, in one statement; the updated row, or None."""
    statement = update(Run).where(Run.id == run_id, *conditions).values(**values).returning(Run)
    return session.scalars(statement, execution_options={"populate_existing": True}).one_or_none()


# ------------------------------------------------------------------------------------------ worker writes


def record_step(
    session: Session, run_id: str, step: int, policy_version: int, metrics: Mapping[str, float]
) -> Step:
    """Store step `step`'s metrics once (a second call for the same step keeps the first); the stored row.

    Non-finite metric values are stored as null (JSON has no NaN). The run's own step pointer moves
    with `set_policy_version`.
    """
    clean = {name: (float(v) if math.isfinite(v) else None) for name, v in metrics.items()}
    row = {"run_id": run_id, "step": step, "policy_version": policy_version, "metrics": clean}
    _insert_missing(session, Step, [{**row, "created_at": utcnow()}], ["run_id", "step"])
    return _one(session, select(Step).where(Step.run_id == run_id, Step.step == step))


def record_rewards(session: Session, run_id: str, step: int, rewards: Iterable[BudgetReward]) -> int:
    """Store the verify task's rewards of a step as they are, once per (run, step, problem, trace, budget,
    summary); how many were new."""
    keys = ["run_id", "step", "problem_id", "trace_index", "budget_index", "summary_index"]
    rows = [{"run_id": run_id, "step": step, **reward.model_dump(mode="json")} for reward in rewards]
    return _insert_missing(session, Reward, [_columns(Reward, row) for row in rows], keys)


def _columns(model: type[Base], attributes: Mapping[str, Any]) -> dict[str, Any]:
    """ORM attribute names → the table's column names (`Reward.cut` is stored in `cut_length`)."""
    mapped = model.__mapper__.columns
    return {mapped[name].name: value for name, value in attributes.items()}


def record_checkpoint(session: Session, run_id: str, policy_version: int, step: int, path: str) -> Checkpoint:
    """Store the checkpoint of `policy_version` once (a second call keeps the first); the stored row."""
    row = {"run_id": run_id, "policy_version": policy_version, "step": step, "path": str(path)}
    _insert_missing(session, Checkpoint, [{**row, "created_at": utcnow()}], ["run_id", "policy_version"])
    query = select(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.policy_version == policy_version)
    return _one(session, query)


def record_evaluation(
    session: Session,
    run_id: str,
    policy_version: int,
    step: int,
    budgets: Sequence[int],
    accuracy: Sequence[float],
    anytime_score: float | None,
    sampled: SampledEvaluation | None = None,
) -> Evaluation:
    """Store the evaluation of `policy_version` once (one policy, one eval set, one seed: the same numbers);
    the stored row. `accuracy[i]` is the accuracy at `budgets[i]` tokens; `sampled` adds n, k, the
    temperature, the seed and the intervals (unset: those columns stay NULL)."""
    if len(budgets) != len(accuracy):
        raise ValueError(f"one accuracy per budget: {len(budgets)} budgets, {len(accuracy)} accuracies")
    row: dict[str, Any] = {
        "run_id": run_id,
        "policy_version": policy_version,
        "step": step,
        "budgets": [int(b) for b in budgets],
        "accuracy": [float(a) for a in accuracy],
        "anytime_score": anytime_score,
        "created_at": utcnow(),
    }
    if sampled is not None:
        row.update(_sampled_columns(sampled, len(budgets)))
    _insert_missing(session, Evaluation, [row], ["run_id", "policy_version"])
    query = select(Evaluation).where(Evaluation.run_id == run_id, Evaluation.policy_version == policy_version)
    return _one(session, query)


def _sampled_columns(sampled: SampledEvaluation, num_budgets: int) -> dict[str, Any]:
    bounds = {"accuracy_ci_low": sampled.accuracy_ci_low, "accuracy_ci_high": sampled.accuracy_ci_high}
    per_problem = sampled.per_problem or {}
    wrong = {name: len(v) for name, v in bounds.items() if len(v) != num_budgets}
    wrong.update({f"per_problem[{p!r}]": len(v) for p, v in per_problem.items() if len(v) != num_budgets})
    if wrong:
        raise ValueError(f"one value per budget ({num_budgets}) needed; got lengths {wrong}")
    return {
        "num_problems": int(sampled.num_problems),
        "num_samples": int(sampled.num_samples),
        "temperature": float(sampled.temperature),
        "seed": int(sampled.seed),
        **{name: [float(x) for x in v] for name, v in bounds.items()},
        "anytime_score_ci_low": float(sampled.anytime_score_ci_low),
        "anytime_score_ci_high": float(sampled.anytime_score_ci_high),
        "per_problem": (
            {p: [float(x) for x in v] for p, v in per_problem.items()}
            if sampled.per_problem is not None
            else None
        ),
    }


def _insert_missing(session: Session, model: type[Base], rows: list[dict[str, Any]], keys: list[str]) -> int:
    """INSERT … ON CONFLICT (keys) DO NOTHING; how many rows were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect not in _UPSERT_INSERTS:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"idempotent inserts need SQLite or PostgreSQL; got {dialect}")
    insert = _UPSERT_INSERTS[dialect]
    inserted = 0
    for start in range(0, len(rows), _INSERT_CHUNK_ROWS):
        chunk = rows[start : start + _INSERT_CHUNK_ROWS]
        statement = insert(model.__table__).values(chunk).on_conflict_do_nothing(index_elements=keys)
        # RETURNING lists the rows actually inserted (rowcount is -1 for this statement on psycopg).
        table = model.__table__
        inserted += len(session.execute(statement.returning(table.c[keys[0]])).all())
    return inserted


def _one(session: Session, query: Select[ModelT]) -> ModelT:
    return session.scalars(query, execution_options={"populate_existing": True}).one()


# ------------------------------------------------------------------------------------------------ reads


def list_budgets(session: Session, run_id: str) -> list[Budget]:
    return list(session.scalars(select(Budget).where(Budget.run_id == run_id).order_by(Budget.index)))


def list_steps(session: Session, run_id: str, offset: int = 0, limit: int = 1000) -> tuple[list[Step], int]:
    return _page(session, select(Step).where(Step.run_id == run_id).order_by(Step.step), offset, limit)


def list_rewards(
    session: Session,
    run_id: str,
    step: int | None = None,
    budget_index: int | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[Reward], int]:
    """In key order (step, problem, trace, budget, summary), optionally one step and/or one budget."""
    query = select(Reward).where(Reward.run_id == run_id)
    if step is not None:
        query = query.where(Reward.step == step)
    if budget_index is not None:
        query = query.where(Reward.budget_index == budget_index)
    order = (Reward.step, Reward.problem_id, Reward.trace_index, Reward.budget_index, Reward.summary_index)
    return _page(session, query.order_by(*order), offset, limit)


def list_checkpoints(session: Session, run_id: str) -> list[Checkpoint]:
    query = select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.policy_version)
    return list(session.scalars(query))


def latest_checkpoint(session: Session, run_id: str) -> Checkpoint | None:
    """The newest checkpoint (highest policy version): where a resumed run continues from."""
    query = (
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(Checkpoint.policy_version.desc())
        .limit(1)
    )
    return session.scalars(query).one_or_none()


def list_evaluations(session: Session, run_id: str) -> list[Evaluation]:
    query = select(Evaluation).where(Evaluation.run_id == run_id).order_by(Evaluation.policy_version)
    return list(session.scalars(query))


def _page(session: Session, query: Select[ModelT], offset: int, limit: int) -> tuple[list[ModelT], int]:
    if offset < 0 or limit < 1:
        raise ValueError(f"offset must be >= 0 and limit >= 1; got offset={offset}, limit={limit}")
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = list(session.scalars(query.offset(offset).limit(limit)))
    return rows, total


class CheckpointNotFound(LookupError):
    def __init__(self, run_id: str, checkpoint_id: int) -> None:
        super().__init__(
            f"run {run_id} has no checkpoint {checkpoint_id}; list them at /v1/runs/{run_id}/checkpoints"
        )
        self.run_id = run_id
        self.checkpoint_id = checkpoint_id


class CheckpointGone(RuntimeError):
    """The checkpoint's row is there but its folder is not (the learner's retention deleted it): it cannot
    be promoted or served (the API answers 409 with this message)."""

    def __init__(self, run_id: str, checkpoint: Checkpoint) -> None:
        super().__init__(
            f"checkpoint {checkpoint.id} of run {run_id} (policy version {checkpoint.policy_version}) is no "
            f"longer on disk ({checkpoint.path}): checkpoint retention deleted it; promote one that "
            f"/v1/runs/{run_id}/checkpoints lists with exists=true"
        )
        self.run_id = run_id
        self.checkpoint_id = checkpoint.id


def checkpoint_on_disk(path: str) -> bool:
    """Whether a checkpoint row's folder is still there. Rows outlive their folders: the learner's retention
    (`services.learner.checkpoint.CheckpointStore.prune`) deletes old folders and leaves the rows alone."""
    return Path(path).is_dir()


OnDisk = Callable[[str], bool]


def best_checkpoint(session: Session, run_id: str, on_disk: OnDisk | None = None) -> Checkpoint | None:
    """The checkpoint whose policy has the best anytime score on the run's evaluation set (a tie goes to the
    later policy); None when no checkpointed policy has been evaluated. With `on_disk` (e.g.
    `checkpoint_on_disk`), checkpoints whose folder it says is gone are passed over."""
    query = (
        select(Checkpoint)
        .join(
            Evaluation,
            (Evaluation.run_id == Checkpoint.run_id)
            & (Evaluation.policy_version == Checkpoint.policy_version),
        )
        .where(Checkpoint.run_id == run_id, Evaluation.anytime_score.is_not(None))
        .order_by(Evaluation.anytime_score.desc(), Checkpoint.policy_version.desc())
    )
    if on_disk is None:
        return session.scalars(query.limit(1)).one_or_none()
    return next((c for c in session.scalars(query) if on_disk(c.path)), None)


def promote_checkpoint(
    session: Session, run_id: str, checkpoint_id: int, on_disk: OnDisk | None = None
) -> Checkpoint:
    """Serve `checkpoint_id` as the run's model (`model: "run:<id>"`); it must be one of the run's, and,
    with `on_disk`, still on disk (else `CheckpointGone`)."""
    require_run(session, run_id)
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.run_id != run_id:
        raise CheckpointNotFound(run_id, checkpoint_id)
    if on_disk is not None and not on_disk(checkpoint.path):
        raise CheckpointGone(run_id, checkpoint)
    _update_run(session, run_id, {"promoted_checkpoint_id": checkpoint.id})
    return checkpoint


def promote_best_checkpoint(
    session: Session, run_id: str, on_disk: OnDisk | None = None
) -> Checkpoint | None:
    """Promote the best-scoring checkpoint (the run driver calls this when a run ends); None, and nothing
    changed, when no checkpoint has an evaluation yet (or, with `on_disk`, none of those is on disk)."""
    require_run(session, run_id)
    best = best_checkpoint(session, run_id, on_disk)
    if best is not None:
        _update_run(session, run_id, {"promoted_checkpoint_id": best.id})
    return best


# ---------------------------------------------------------------------- inference: a policy's evaluation
# (issue 25: `reasoning_effort` and `min_accuracy` are read off the promoted checkpoint's evaluation curve)


def evaluation_of_policy(session: Session, run_id: str, policy_version: int) -> Evaluation | None:
    """The evaluation of the run's `policy_version` (one per policy: `uq_evaluations_run_id_policy_version`),
    or None when that policy has not been evaluated."""
    query = select(Evaluation).where(Evaluation.run_id == run_id, Evaluation.policy_version == policy_version)
    return session.scalars(query).one_or_none()
