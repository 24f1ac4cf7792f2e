"""The driver asks the learner for the traces of `samples_per_step` problems of each step, stores what it
returns with the step (once), and logs them to MLflow as a table."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker

from anytime.contracts.learn import LEARN_TASK, LearnRequest, LearnResult
from anytime.db import repository
from anytime.db import samples as stored_samples
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.tracking import NullTracker
from services.control.driver import DriverDeps, RunDriver
from tests.unit.api.test_api_samples import sample
from tests.unit.control.test_step_pipeline import RecordingTasks, sessions

__all__ = ["sessions"]  # fixtures this module uses


class SamplingTasks(RecordingTasks):
    """The learner answers with one trace per asked problem (as `services.learner.samples` would)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def __call__(self, name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        answer = super().__call__(name, kwargs)
        if name != LEARN_TASK:
            return answer
        learn = LearnRequest.model_validate(kwargs)
        self.asked.append(list(learn.sample_problems))
        shown = [sample(learn.run_id, learn.step, p, 0) for p in learn.sample_problems]
        return LearnResult.model_validate({**answer, "samples": [s.model_dump() for s in shown]}).model_dump(
            mode="json"
        )


def test_each_step_stores_and_logs_the_traces_of_its_first_problems(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"p{i}", "problem": "x", "answer": "1"}) + "\n" for i in range(6))
    )
    config = RunConfig(model="m", dataset=str(data), problems_per_step=4, steps=2, samples_per_step=3)
    with sessions() as session:
        run_id = repository.create_run(session, config).id
        session.commit()
    tables: list[tuple[str, int]] = []

    class Tracker(NullTracker):
        def log_table(self, run: str | None, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
            tables.append((artifact_file, len(columns["verdict"])))

    tasks = SamplingTasks()
    store = SimpleNamespace(delete_batch=lambda run, step: None)
    driver = RunDriver(DriverDeps(sessions, tasks, cast(Any, store), Tracker(), tmp_path, poll_s=0.05))
    driver._leases[run_id] = cast(Any, SimpleNamespace(lost=threading.Event()))
    driver._run_steps(run_id, config, RunPlan.from_config(config), "mlflow-run")
    # The first 3 of each step's 4 problems, in the step's own order.
    assert [len(asked) for asked in tasks.asked] == [3, 3]
    for step, (job, asked) in enumerate(zip(tasks.rollouts, tasks.asked, strict=True)):
        assert asked == [p.id for p in job.problems][:3], step
    with sessions() as session:
        rows, total = stored_samples.list_samples(session, run_id, limit=100)
    assert total == 6 and sorted((r.step, r.problem_id) for r in rows) == sorted(
        (step, p) for step, asked in enumerate(tasks.asked) for p in asked
    )
    assert tables == [
        ("samples/step_000000.json", 6),
        ("samples/step_000001.json", 6),
    ]  # 3 traces × 2 budgets
