"""What MLflow is given: resolved params, the start-vs-end curve, the experiment's kind, the server's size."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy.orm import Session, sessionmaker

from anytime.contracts.evaluation import EvalJob, EvalResult
from anytime.curve_plot import start_vs_end_series
from anytime.db import Base, repository
from anytime.db.session import make_engine, make_session_factory
from anytime.problems import Problem
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan, resolved_params
from anytime.tracking import (
    EXPERIMENT_KIND_TAG,
    START_VS_END,
    TRAINING_KIND,
    MlflowTracker,
    experiment_url,
    flatten_params,
    log_start_vs_end,
)
from anytime_cli.stack import mlflow_server_workers
from services.control.driver import DriverDeps, RunDriver


def test_a_grpo_runs_params_are_the_values_it_runs_with() -> None:
    config = RunConfig(model="m", dataset="d", algorithm="grpo", b_max=64, eval_dataset="e")
    params = flatten_params(resolved_params(config, RunPlan.from_config(config)))
    # The learner's own knobs (`learner.*`) may stay unset: resolved on its device, or off.
    assert [k for k, v in params.items() if v == "None" and "." not in k] == []
    assert {k: params[k] for k in ("num_budgets", "num_summaries", "baseline", "summary_mode", "prior")} == {
        "num_budgets": "1",
        "num_summaries": "1",
        "baseline": "v2",
        "summary_mode": "grpo",
        "prior": "base",
    }
    # b_max + 4·4 summaries of 32 tokens; k = 4 at the authors' temperature; the grid of 4 budgets.
    assert (params["loss_normalizer"], params["eval_samples"]) == ("576", "4")
    assert (params["budgets"], params["probs"], params["eval_budgets"]) == ("64", "1.0", "16,32,48,64")
    assert "name" not in params  # unset and nothing to fill in: the run's name is MLflow's run name


def test_brpo_params_name_the_prior_it_resolves_and_keep_what_the_user_set() -> None:
    brpo = resolved_params(
        RunConfig(model="m", dataset="d"), RunPlan.from_config(RunConfig(model="m", dataset="d"))
    )
    assert (brpo["num_budgets"], brpo["num_summaries"], brpo["baseline"], brpo["prior"]) == (
        4,
        4,
        "brpo",
        "uniform",
    )
    explicit = resolved_params(
        RunConfig(model="m", dataset="d", probs=(0.5, 0.5)),
        RunPlan.from_config(RunConfig(model="m", dataset="d", probs=(0.5, 0.5))),
    )
    assert (explicit["prior"], explicit["probs"], explicit["budgets"]) == ("explicit", [0.5, 0.5], [64, 128])
    linear = resolved_params(
        RunConfig(model="m", dataset="d", prior="linear", num_summaries=2),
        RunPlan.from_config(RunConfig(model="m", dataset="d", prior="linear", num_summaries=2)),
    )
    assert (linear["prior"], linear["num_summaries"]) == ("linear", 2)


def _evaluation(version: int, accuracy: list[float], banded: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        policy_version=version,
        budgets=[32, 64],
        accuracy=accuracy,
        num_samples=4 if banded else 1,
        temperature=0.6 if banded else 0.0,
        accuracy_ci_low=[a - 0.1 for a in accuracy] if banded else None,
        accuracy_ci_high=[a + 0.1 for a in accuracy] if banded else None,
    )


def test_start_vs_end_is_the_first_and_last_policy_with_their_bands() -> None:
    evaluations = [
        _evaluation(4, [0.5, 0.7]),
        _evaluation(0, [0.2, 0.3], banded=False),
        _evaluation(2, [0.4, 0.5]),
    ]
    start, end = start_vs_end_series(evaluations, name="brpo")
    assert (start.label, start.low) == ("brpo start v0 (greedy)", None)
    assert (end.label, end.accuracy, end.low) == ("brpo end v4 (k=4, T=0.6, 95 % CI)", [0.5, 0.7], [0.4, 0.6])
    (only,) = start_vs_end_series(evaluations[:1])
    assert only.label.startswith("start v4")
    assert start_vs_end_series([]) == []


@dataclass
class RecordingTracker:
    pngs: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.update(metrics)

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        assert png.startswith(b"\x89PNG")
        self.pngs.append(artifact_file)


def test_the_start_vs_end_curve_needs_two_evaluations_and_a_run() -> None:
    tracker = RecordingTracker()
    assert not log_start_vs_end(cast(Any, tracker), "run", [_evaluation(0, [0.2, 0.3])], "t")
    assert not log_start_vs_end(cast(Any, tracker), None, [_evaluation(0, [0.2, 0.3])] * 2, "t")
    assert log_start_vs_end(
        cast(Any, tracker), "run", [_evaluation(0, [0.2, 0.3]), _evaluation(1, [0.3, 0.4])], "t"
    )
    assert tracker.pngs == [START_VS_END]


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_the_driver_logs_start_vs_end_after_each_evaluation_past_the_first(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    config = RunConfig(model="m", dataset="d", eval_dataset="e", b_max=64, eval_num_budgets=2)
    with sessions() as session:
        run_id = repository.create_run(session, config).id
        session.commit()

    def run_task(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        job = EvalJob.model_validate(kwargs)
        accuracy = [0.25, 0.5] if job.policy_version == 0 else [0.5, 0.75]
        return EvalResult(
            run_id=job.run_id,
            policy_version=job.policy_version,
            budgets=job.budgets,
            accuracy=accuracy,
            accuracy_ci_low=[a - 0.25 for a in accuracy],
            accuracy_ci_high=[a + 0.25 for a in accuracy],
            anytime_score=sum(accuracy) / 2,
            anytime_score_ci_low=0.0,
            anytime_score_ci_high=1.0,
            num_problems=len(job.problems),
            num_samples=job.sampling.num_samples,
            temperature=job.sampling.temperature,
            seed=job.sampling.seed,
            per_problem={"a": accuracy, "b": accuracy},
            statuses={"correct": 8, "incorrect": 8},
            mean_thinking_length=40.0,
            closed_share=0.5,
        ).model_dump(mode="json")

    tracker = RecordingTracker()
    deps = DriverDeps(
        sessions=sessions,
        run_task=run_task,
        store=cast(Any, None),
        tracker=cast(Any, tracker),
        runs_root=tmp_path,
    )
    driver = RunDriver(deps)
    driver._leases[run_id] = cast(Any, SimpleNamespace(lost=threading.Event()))  # as `drive` holds it
    problems = [Problem(id=p, problem="x", answer="1") for p in "ab"]
    for version, step in ((0, -1), (2, 1), (4, 3)):
        driver._evaluate(
            run_id, config, RunPlan.from_config(config), problems, version, step, "/ckpt", "mlflow-run"
        )
    assert tracker.pngs == [
        "curves/eval_v000000.png",
        "curves/eval_v000002.png",
        START_VS_END,
        "curves/eval_v000004.png",
        START_VS_END,
    ]


@pytest.mark.slow  # MLflow creates its SQLite schema (a few seconds)
def test_the_experiment_is_a_training_experiment(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, (tmp_path / "artifacts").as_uri())
    assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    tracker.client.delete_experiment_tag(tracker.experiment_id, EXPERIMENT_KIND_TAG)  # a store from before
    again = MlflowTracker(uri)
    assert again.experiment_id == tracker.experiment_id
    assert again.client.get_experiment(again.experiment_id).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND


def test_the_experiment_link_opens_the_training_view() -> None:
    assert (
        experiment_url("http://127.0.0.1:5000/", "1")
        == "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
    )


def test_the_stacks_mlflow_server_runs_one_process_on_sqlite_and_a_few_elsewhere() -> None:
    assert mlflow_server_workers("sqlite:////tmp/mlflow.db", 64) == 1
    assert mlflow_server_workers("postgresql://db/mlflow", 2) == 1
    assert mlflow_server_workers("postgresql://db/mlflow", 6) == 3
    assert mlflow_server_workers("postgresql://db/mlflow", 64) == 4
    assert mlflow_server_workers("postgresql://db/mlflow", None) == 1
