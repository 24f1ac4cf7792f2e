"""Sampled evaluation's plumbing: the run config's protocol, the job's sampling rules, and the driver's
evaluation step (the job it sends, the SQL row, the MLflow metric names, the plot) with a fake eval task."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from anytime.contracts.evaluation import EVALUATE_TASK, EvalJob, EvalResult, EvalSampling
from anytime.curve_plot import CurveSeries, accuracy_vs_budget_png, series_label
from anytime.db import Base, repository
from anytime.db.session import make_engine, make_session_factory
from anytime.problems import Problem
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from services.control.driver import DriverDeps, RunDriver


def test_runs_evaluate_like_the_authors_by_default_and_greedy_is_one_sample() -> None:
    def samples(**body: object) -> int:
        return RunPlan.from_config(RunConfig(model="m", dataset="d", **body)).eval_sampling.num_samples

    config = RunConfig(model="m", dataset="d")
    assert (samples(), config.evaluation.temperature, config.evaluation.seed) == (4, 0.6, 0)
    assert samples(eval_temperature=0) == 1
    assert samples(eval_samples=8) == 8
    with pytest.raises(ValidationError, match="greedy"):
        RunConfig(model="m", dataset="d", eval_temperature=0, eval_samples=4)
    assert samples(eval_temperature=0, eval_samples=1) == 1
    with pytest.raises(ValidationError, match="greedy"):
        EvalSampling(num_samples=2, temperature=0.0)
    assert EvalSampling().greedy and EvalSampling().num_samples == 1  # a job without sampling: greedy


def test_curve_labels_and_bands() -> None:
    assert series_label("v1", 4, 0.6) == "v1 (k=4, T=0.6, 95 % CI)"
    assert series_label("v1", 1, 0.0) == "v1 (greedy)"
    assert series_label("v1", None, None) == "v1"
    with pytest.raises(ValueError, match="both band edges"):
        CurveSeries("x", [1, 2], [0.5, 0.5], low=[0.1, 0.1])
    with pytest.raises(ValueError, match="per budget"):
        CurveSeries("x", [1, 2], [0.5, 0.5], low=[0.1], high=[0.9])
    banded = CurveSeries("x", [1, 2], [0.5, 0.6], low=[0.4, 0.5], high=[0.6, 0.7])
    png = accuracy_vs_budget_png([banded, CurveSeries("greedy", [1, 2], [0.5, 1.0])], title="t")
    assert png.startswith(b"\x89PNG")


@dataclass
class RecordingTracker:
    metrics: dict[str, float] = field(default_factory=dict)
    pngs: list[str] = field(default_factory=list)

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.update(metrics)

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        assert png.startswith(b"\x89PNG")
        self.pngs.append(artifact_file)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _result(job: EvalJob) -> dict[str, Any]:
    """What the eval task would answer for two problems and a 2-budget grid."""
    return EvalResult(
        run_id=job.run_id,
        policy_version=job.policy_version,
        budgets=job.budgets,
        accuracy=[0.25, 0.75],
        accuracy_ci_low=[0.0, 0.5],
        accuracy_ci_high=[0.5, 1.0],
        anytime_score=0.5,
        anytime_score_ci_low=0.25,
        anytime_score_ci_high=0.75,
        num_problems=len(job.problems),
        num_samples=job.sampling.num_samples,
        temperature=job.sampling.temperature,
        seed=job.sampling.seed,
        per_problem={"a": [0.0, 0.5], "b": [0.5, 1.0]},
        statuses={"correct": 8, "incorrect": 8},
        mean_thinking_length=40.0,
        closed_share=0.5,
    ).model_dump(mode="json")


def test_the_driver_sends_the_runs_protocol_and_stores_logs_and_draws_the_intervals(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    config = RunConfig(model="m", dataset="d", eval_dataset="e", b_max=64, eval_num_budgets=2, eval_seed=9)
    with sessions() as session:
        run_id = repository.create_run(session, config).id
        session.commit()
    sent: list[EvalJob] = []

    def run_task(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        assert name == EVALUATE_TASK
        sent.append(EvalJob.model_validate(kwargs))
        return _result(sent[-1])

    tracker = RecordingTracker()
    deps = DriverDeps(
        sessions=sessions,
        run_task=run_task,
        store=cast(Any, None),  # the evaluation step never touches trajectories
        tracker=cast(Any, tracker),
        runs_root=tmp_path,
    )
    problems = [Problem(id=p, problem="x", answer="1") for p in "ab"]
    driver = RunDriver(deps)
    driver._leases[run_id] = cast(Any, SimpleNamespace(lost=threading.Event()))  # as `drive` holds it
    driver._evaluate(run_id, config, RunPlan.from_config(config), problems, 3, 2, "/ckpt/v3", "mlflow-run")

    (job,) = sent
    assert job.sampling == EvalSampling(num_samples=4, temperature=0.6, seed=9)
    assert job.budgets == [32, 64]
    with sessions() as session:
        (row,) = repository.list_evaluations(session, run_id)
    assert (row.policy_version, row.step, row.accuracy, row.anytime_score) == (3, 2, [0.25, 0.75], 0.5)
    assert (row.num_problems, row.num_samples, row.temperature, row.seed) == (2, 4, 0.6, 9)
    assert (row.accuracy_ci_low, row.accuracy_ci_high) == ([0.0, 0.5], [0.5, 1.0])
    assert (row.anytime_score_ci_low, row.anytime_score_ci_high) == (0.25, 0.75)
    assert row.per_problem == {"a": [0.0, 0.5], "b": [0.5, 1.0]}
    assert tracker.metrics == {
        "Eval/accuracy/budget_32": 0.25,
        "Eval/accuracy/budget_64": 0.75,
        "Eval/accuracy_ci_low/budget_32": 0.0,
        "Eval/accuracy_ci_low/budget_64": 0.5,
        "Eval/accuracy_ci_high/budget_32": 0.5,
        "Eval/accuracy_ci_high/budget_64": 1.0,
        "Eval/anytime_score": 0.5,
        "Eval/anytime_score_ci_low": 0.25,
        "Eval/anytime_score_ci_high": 0.75,
        "Eval/num_problems": 2,
        "Eval/num_samples": 4,
        "Eval/thinking_length_mean": 40.0,
    }
    assert tracker.pngs == ["curves/eval_v000003.png"]


def test_per_problem_values_need_one_value_per_budget(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        run_id = repository.create_run(session, RunConfig(model="m", dataset="d")).id
        sampled = repository.SampledEvaluation(
            num_problems=1,
            num_samples=2,
            temperature=0.6,
            seed=0,
            accuracy_ci_low=[0.0, 0.0],
            accuracy_ci_high=[1.0, 1.0],
            anytime_score_ci_low=0.0,
            anytime_score_ci_high=1.0,
            per_problem={"a": [0.5]},
        )
        with pytest.raises(ValueError, match="one value per budget"):
            repository.record_evaluation(session, run_id, 1, 0, [16, 32], [0.5, 0.5], 0.5, sampled)


def test_evaluation_metrics_sort_before_every_training_metric() -> None:
    from anytime.contracts.evaluation import EVAL_METRIC_PREFIX

    training = ["advantage/thinking_mean", "anytime/objective", "batch/traces", "loss/policy", "variance/v1"]
    evaluation = f"{EVAL_METRIC_PREFIX}anytime_score"
    assert sorted([*training, evaluation])[0] == evaluation
