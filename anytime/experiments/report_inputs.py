"""An experiment's run records read from SQL: each member run's evaluations and its steps' metrics."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from anytime.db import repository
from anytime.db.experiments import Member
from anytime.experiments.records import EvaluationPoint, RunRecord
from anytime.run_plan import resolved_params

MAX_STEPS = 100_000  # RunConfig.steps' bound


def run_records(session: Session, members: Sequence[Member]) -> list[RunRecord]:
    """What the report reads of each run, from SQL: its evaluations and its steps' metrics (a metric
    stored as null, e.g. a NaN, is left out)."""
    records = []
    for member in members:
        evaluations = [
            EvaluationPoint(
                policy_version=row.policy_version,
                step=row.step,
                budgets=[int(b) for b in row.budgets],
                accuracy=[float(a) for a in row.accuracy],
                anytime_score=(row.anytime_score if row.anytime_score is not None else fmean(row.accuracy)),
                per_problem=getattr(row, "per_problem", None),
            )
            for row in repository.list_evaluations(session, member.run.id)
        ]
        steps, _ = repository.list_steps(session, member.run.id, 0, MAX_STEPS)
        step_metrics = [
            (row.step, {name: float(v) for name, v in row.metrics.items() if v is not None}) for row in steps
        ]
        records.append(
            RunRecord(
                arm=member.arm,
                seed=member.seed,
                run_id=member.run.id,
                status=member.run.status.value,
                evaluations=evaluations,
                step_metrics=step_metrics,
                resolved=_resolved(member),
                contamination=member.run.contamination,
            )
        )
    return records


def _resolved(member: Member) -> dict[str, Any]:
    """The run's config as it ran; empty for a stored config this version no longer validates."""
    try:
        return resolved_params(member.run.run_config(), member.run.run_plan())
    except ValidationError:
        return {}
