"""Rollout samples in SQL: a few traces of every step and evaluation, readable (`anytime.samples`).

One row per trace, named by (run, kind, step, problem, trace): the learner's (`train`) or the evaluation's
(`eval`, whose step is the run's last step before it, -1 before the first). The record is the sample as JSON;
the key columns are copied out of it so the API filters and pages in SQL. Written with its step, in the
step's transaction, once (a re-delivered step stores nothing twice). Like `repository`, nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from anytime.db import repository
from anytime.db.base import Base
from anytime.db.models import UTCDateTime, _run_fk, utcnow
from anytime.samples import RolloutSample, SampleKind

SAMPLE_KEYS = ["run_id", "kind", "step", "problem_id", "trace_index"]


class StoredSample(Base):
    """One trace of a step's (or an evaluation's) samples; `record` is its `RolloutSample`."""

    __tablename__ = "rollout_samples"

    run_id: Mapped[str] = mapped_column(String(32), _run_fk(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    trace_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_version: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def sample(self) -> RolloutSample:
        return RolloutSample.model_validate(self.record)


def record_samples(session: Session, run_id: str, samples: Iterable[RolloutSample]) -> int:
    """Store samples once per (run, kind, step, problem, trace); how many were new."""
    now = utcnow()
    rows = [
        {
            "run_id": run_id,
            "kind": sample.kind,
            "step": sample.step,
            "problem_id": sample.problem_id,
            "trace_index": sample.trace_index,
            "policy_version": sample.policy_version,
            "record": sample.model_dump(mode="json"),
            "created_at": now,
        }
        for sample in samples
    ]
    return repository._insert_missing(session, StoredSample, rows, SAMPLE_KEYS)


def list_samples(
    session: Session,
    run_id: str,
    kind: SampleKind = "train",
    step: int | None = None,
    problem_id: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> tuple[list[StoredSample], int]:
    """In (step, problem, trace) order, optionally one step and/or one problem; and how many there are."""
    query = select(StoredSample).where(StoredSample.run_id == run_id, StoredSample.kind == kind)
    if step is not None:
        query = query.where(StoredSample.step == step)
    if problem_id is not None:
        query = query.where(StoredSample.problem_id == problem_id)
    order = (StoredSample.step, StoredSample.problem_id, StoredSample.trace_index)
    return repository._page(session, query.order_by(*order), offset, limit)


def sampled_steps(session: Session, run_id: str, kind: SampleKind = "train") -> list[int]:
    """The steps that have samples, in order."""
    query = (
        select(StoredSample.step)
        .where(StoredSample.run_id == run_id, StoredSample.kind == kind)
        .distinct()
        .order_by(StoredSample.step)
    )
    return list(session.scalars(query))
