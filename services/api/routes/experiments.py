"""`/v1/experiments`: paired arms × seeds of runs; create, list, read, cancel, resume, report.

An experiment's runs are ordinary runs: stored by `repository.create_run` and sent to the driver by the
scheduler, as `POST /v1/runs` does, all stored in one transaction. Pairing: every arm of a seed gets the
same `seed` and `eval_seed` (the driver samples a step's problems from the seed and the step, and the
evaluation's samples from `eval_seed`), and the fields that decide which problems a run trains and is
evaluated on must be the same in every arm (`PAIRED_FIELDS`), so within a seed the arms see the same
problems in the same order and are evaluated on the same problems, grid, temperature, k and seeds.

MLflow: the experiment is a parent run (created here, best effort) and the driver tags each member run
as its child (`mlflow.parentRunId`), so MLflow's compare view works per experiment.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from anytime.db import experiments, repository
from anytime.db.experiments import Experiment, Member, PlannedRun
from anytime.db.models import RunStatus, new_run_id
from anytime.experiment_report import (
    EvaluationPoint,
    ExperimentReport,
    RunRecord,
    build_report,
    report_markdown,
    report_png,
)
from anytime.logging import get_logger
from anytime.run_config import RunConfig
from anytime.tracking import Tracker
from services.api.deps import BAD_BODY, RUN_ID_PATTERN, Offset, SchedulerDep, SessionDep, SettingsDep
from services.api.routes.runs import (
    DriverHoldsRun,
    NotScheduled,
    cancel_one,
    prepare_resume,
    send_to_driver,
)
from services.api.run_inputs import check_run_inputs
from services.api.schemas import ExperimentOut, ExperimentSpec, Page
from services.api.settings import ApiSettings

logger = get_logger(__name__)
router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

# Fields that decide which problems a run trains on (the driver samples `problems_per_step` of `dataset`
# from the seed and the step) and how it is evaluated: the same in every arm, or the arms are not paired.
PAIRED_FIELDS = (
    "dataset",
    "problems_per_step",
    "eval_dataset",
    "eval_problems",
    "eval_num_budgets",
    "eval_samples",
    "eval_temperature",
)
_MLFLOW_END_STATES = {
    RunStatus.SUCCEEDED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No experiment with this id."}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {
        "description": "None of the experiment's runs is in a status that allows this."
    }
}
_UNSCHEDULED: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "The broker did not take the runs."}
}

ExperimentId = Annotated[str, Path(description="The experiment's id.", pattern=RUN_ID_PATTERN)]


def get_experiment_or_404(experiment_id: ExperimentId, session: SessionDep) -> Experiment:
    experiment = experiments.get_experiment(session, experiment_id)
    if experiment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"experiment {experiment_id} not found")
    return experiment


ExperimentDep = Annotated[Experiment, Depends(get_experiment_or_404)]


class LazyMlflowTracker:
    """An `MlflowTracker` made on first use, so the API starts (and serves runs) without MLflow."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._tracker: Tracker | None = None
        self._lock = threading.Lock()

    def _get(self) -> Tracker:
        with self._lock:
            if self._tracker is None:
                from anytime.tracking import MlflowTracker

                self._tracker = MlflowTracker(self.tracking_uri)
            return self._tracker

    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
        return self._get().start_run(name, params, tags)

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        self._get().log_metrics(run, metrics, step)

    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None:
        self._get().log_dict(run, data, artifact_file)

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        self._get().log_png(run, png, artifact_file)

    def end_run(self, run: str | None, status: str) -> None:
        self._get().end_run(run, status)


def experiment_tracker(settings: ApiSettings) -> Tracker:
    """What the app's lifespan puts on `app.state.experiment_tracker`."""
    return LazyMlflowTracker(settings.resolved_mlflow_uri)


def get_experiment_tracker(request: Request) -> Tracker:
    tracker: Tracker = request.app.state.experiment_tracker
    return tracker


TrackerDep = Annotated[Tracker, Depends(get_experiment_tracker)]


# ------------------------------------------------------------------------------------------ create


@router.post("", status_code=status.HTTP_201_CREATED, responses={**BAD_BODY, **_UNSCHEDULED})
def create_experiment(
    spec: ExperimentSpec,
    session: SessionDep,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    tracker: TrackerDep,
    response: Response,
) -> ExperimentOut:
    """Store one queued run per arm × seed and hand each to the run driver. A bad spec is 422 naming the
    arm and field (each run's config must validate as a RunConfig and pass the input checks of
    `POST /v1/runs`; the paired fields must agree across arms); nothing is stored then. If the broker
    refuses the runs: 503, and those not sent are marked failed (resume the experiment later)."""
    planned = plan_runs(spec, settings)
    experiment_id = new_run_id()
    stored = {**spec.model_dump(mode="json"), "reference": spec.reference_arm}
    # Before the write transaction: MLflow may be slow to answer, and SQLite would be locked meanwhile.
    parent = _start_parent_run(tracker, experiment_id, spec, planned)
    experiment, members = experiments.create_experiment(
        session, experiment_id, spec.name, stored, spec.reference_arm, planned, mlflow_run_id=parent
    )
    session.commit()
    try:
        send_to_driver(session, scheduler, [m.run for m in members])
    except NotScheduled as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"experiment {experiment.id} was stored but {len(err.run_ids)} of its {len(members)} runs could "
            f"not be scheduled, so they are marked failed: {err.error}; fix the broker, then "
            f"POST /v1/experiments/{experiment.id}/resume",
        ) from err
    response.headers["Location"] = f"/v1/experiments/{experiment.id}"
    return ExperimentOut.of(experiment, experiments.members(session, experiment.id))


def plan_runs(spec: ExperimentSpec, settings: ApiSettings) -> list[PlannedRun]:
    """Every run of the spec, seed by seed (the arms of a seed next to each other, so they are scheduled
    together); a `RequestValidationError` (422) naming the arm and field if any is wrong."""
    configs = _arm_configs(spec)
    _require_pairing(configs)
    _require_inputs(configs, settings)
    return [PlannedRun(arm, seed, _run_config(spec, arm, seed)) for seed in spec.seeds for arm in spec.arms]


def _run_config(spec: ExperimentSpec, arm: str, seed: int) -> RunConfig:
    merged = {**spec.base, **spec.arms[arm], "name": f"{spec.name}/{arm}/seed{seed}"}
    return RunConfig.model_validate({**merged, "seed": seed, "eval_seed": seed})


def _arm_configs(spec: ExperimentSpec) -> dict[str, RunConfig]:
    """Each arm's config at the first seed (seeds change nothing that could fail validation)."""
    configs: dict[str, RunConfig] = {}
    errors: list[dict[str, Any]] = []
    for arm in spec.arms:
        try:
            configs[arm] = _run_config(spec, arm, spec.seeds[0])
        except ValidationError as err:
            errors += [
                {
                    "type": e["type"],
                    "loc": ("body", "arms", arm, *e["loc"]),
                    "msg": f"arm {arm}: {e['msg']}",
                    "input": e.get("input"),
                }
                for e in err.errors(include_url=False, include_context=False)
            ]
    if errors:
        raise RequestValidationError(errors)
    return configs


def _require_pairing(configs: Mapping[str, RunConfig]) -> None:
    errors: list[dict[str, Any]] = []
    (first, reference), *others = configs.items()
    if reference.eval_dataset is None:
        errors.append(
            _error(
                ("base", "eval_dataset"),
                "an experiment compares its arms by their evaluations: set eval_dataset (held-out problems) "
                "in base",
            )
        )
    for arm, config in others:
        for name in PAIRED_FIELDS:
            mine, theirs = getattr(config, name), getattr(reference, name)
            if mine != theirs:
                errors.append(
                    _error(
                        ("arms", arm, name),
                        f"every arm must have the same {name} (pairing: within a seed the arms train and "
                        f"are evaluated on the same problems); arm {first} has {theirs!r}, arm {arm} "
                        f"{mine!r}: set it in base, not per arm",
                    )
                )
        grid, reference_grid = list(config.plan().eval_budgets), list(reference.plan().eval_budgets)
        if not errors and grid != reference_grid:
            errors.append(
                _error(
                    ("arms", arm, "b_max"),
                    f"every arm must be evaluated on the same budget grid (b_max / eval_num_budgets); arm "
                    f"{first} has {reference_grid}, arm {arm} {grid}",
                )
            )
    if errors:
        raise RequestValidationError(errors)


def _require_inputs(configs: Mapping[str, RunConfig], settings: ApiSettings) -> None:
    """`POST /v1/runs`'s input checks for every run: once per arm, since a run's seed and name change
    nothing they look at (and once per distinct set of inputs, since datasets are read to check them)."""
    errors: list[dict[str, Any]] = []
    checked: dict[tuple[str, str, str | None, int], list[Any]] = {}
    for arm, config in configs.items():
        key = (config.model, config.dataset, config.eval_dataset, config.problems_per_step)
        if key not in checked:
            checked[key] = check_run_inputs(config, settings.resolved_data_roots)
        errors += [
            {**_error(("arms", arm, p.field), f"arm {arm}: {p.message}"), "input": getattr(config, p.field)}
            for p in checked[key]
        ]
    if errors:
        raise RequestValidationError(errors)


def _error(loc: tuple[str, ...], message: str) -> dict[str, Any]:
    return {"type": "value_error", "loc": ("body", *loc), "msg": message}


def _start_parent_run(
    tracker: Tracker, experiment_id: str, spec: ExperimentSpec, planned: Sequence[PlannedRun]
) -> str | None:
    """The experiment's MLflow parent run, with the spec's resolved values as params; None (logged) when
    MLflow does not take it: the runs train anyway, as MLflow's own children of nothing."""
    first_seed = spec.seeds[0]
    per_seed = {"name", "seed", "eval_seed"}
    params: dict[str, Any] = {
        "experiment.name": spec.name,
        "experiment.reference": spec.reference_arm,
        "experiment.arms": list(spec.arms),
        "experiment.seeds": list(spec.seeds),
        "arm": {
            p.arm: {k: v for k, v in p.config.model_dump(mode="json").items() if k not in per_seed}
            for p in planned
            if p.seed == first_seed
        },
    }
    tags = {"anytime.experiment_id": experiment_id, "anytime.kind": "experiment"}
    try:
        parent = tracker.start_run(spec.name, params, tags)
        tracker.log_dict(
            parent, {**spec.model_dump(mode="json"), "reference": spec.reference_arm}, "spec.json"
        )
    except Exception as err:  # MLflow is not the experiment: its runs go ahead without a parent
        logger.warning("MLflow parent run not created", experiment_id=experiment_id, error=str(err))
        return None
    return parent


# ------------------------------------------------------------------------------------------ read


@router.get("")
def list_experiments(
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[ExperimentOut]:
    """Experiments, newest first, each with its runs."""
    rows, total = experiments.list_experiments(session, offset, limit)
    found = experiments.members_of(session, [e.id for e in rows])
    return Page[ExperimentOut](
        items=[ExperimentOut.of(e, found[e.id]) for e in rows], total=total, offset=offset, limit=limit
    )


@router.get("/{experiment_id}", responses=_NOT_FOUND)
def get_experiment(experiment: ExperimentDep, session: SessionDep) -> ExperimentOut:
    return ExperimentOut.of(experiment, experiments.members(session, experiment.id))


# ---------------------------------------------------------------------------------- cancel, resume


@router.post("/{experiment_id}/cancel", responses={**_NOT_FOUND, **_CONFLICT})
def cancel_experiment(
    experiment: ExperimentDep, session: SessionDep, scheduler: SchedulerDep
) -> ExperimentOut:
    """Cancel every run that has not ended, as `POST /v1/runs/{id}/cancel` does (queued: now; running: at
    its next task boundary, or now when no live driver holds it). 409 when all have ended."""
    members = experiments.members(session, experiment.id)
    cancelled = 0
    for member in members:
        if member.run.status.finished:
            continue
        try:
            cancel_one(session, scheduler, member.run.id)
        except repository.InvalidTransition:  # it ended meanwhile
            continue
        cancelled += 1
    if not cancelled:
        status_now = experiments.experiment_status(m.run.status for m in members)
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"experiment {experiment.id} is {status_now}: every run has ended"
        )
    session.commit()
    return ExperimentOut.of(experiment, experiments.members(session, experiment.id))


@router.post("/{experiment_id}/resume", responses={**_NOT_FOUND, **_CONFLICT, **_UNSCHEDULED})
def resume_experiment(
    experiment: ExperimentDep, session: SessionDep, scheduler: SchedulerDep
) -> ExperimentOut:
    """Resume every run that `POST /v1/runs/{id}/resume` would: failed or cancelled ones are queued again,
    queued or running ones without a live driver get a new one; succeeded runs and runs a live driver holds
    are left alone. 409 when that is all of them."""
    resumed = []
    for member in experiments.members(session, experiment.id):
        try:
            resumed.append(prepare_resume(session, scheduler, member.run))
        except (DriverHoldsRun, repository.InvalidTransition):
            continue
    if not resumed:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"experiment {experiment.id}: nothing to resume (every run succeeded or a live driver holds it, "
            "or Redis cannot tell)",
        )
    session.commit()
    try:
        send_to_driver(session, scheduler, resumed)
    except NotScheduled as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{len(err.run_ids)} runs of experiment {experiment.id} could not be scheduled, so they are "
            f"marked failed: {err.error}; fix the broker, then resume again",
        ) from err
    return ExperimentOut.of(experiment, experiments.members(session, experiment.id))


# ------------------------------------------------------------------------------------------ report


@router.get(
    "/{experiment_id}/report",
    response_model=ExperimentReport,
    responses={
        status.HTTP_200_OK: {
            "content": {"text/markdown": {}, "image/png": {}},
            "description": "The report as JSON, Markdown (format=md) or a PNG (format=png).",
        },
        **_NOT_FOUND,
        status.HTTP_409_CONFLICT: {"description": "The runs' evaluations cannot be compared."},
    },
)
def get_report(
    experiment: ExperimentDep,
    session: SessionDep,
    tracker: TrackerDep,
    format: Annotated[Literal["json", "md", "png"], Query(description="json, md or png.")] = "json",
) -> ExperimentReport | Response:
    """Per arm: accuracy at every budget and anytime score at the start and the end, the mean over seeds
    with 95 % intervals; paired differences against the reference arm; variance ratios and training
    curves. `md` and `png` also log the report to the experiment's MLflow parent run (best effort)."""
    members = experiments.members(session, experiment.id)
    try:
        report = build_report(
            list(experiment.spec["arms"]), experiment.reference, run_records(session, members)
        )
    except ValueError as err:  # e.g. runs evaluated on different problems or grids: not comparable
        raise HTTPException(status.HTTP_409_CONFLICT, f"experiment {experiment.id}: {err}") from err
    if format == "json":
        return report
    png = report_png(report)
    _log_to_parent(
        tracker, experiment, report, png, experiments.experiment_status(m.run.status for m in members)
    )
    if format == "png":
        return Response(png, media_type="image/png")
    return Response(report_markdown(report), media_type="text/markdown; charset=utf-8")


def run_records(session: Session, members: Sequence[Member]) -> list[RunRecord]:
    """What the report reads of each run, from SQL: its evaluations and its steps' metrics."""
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
        steps, _ = repository.list_steps(session, member.run.id, 0, _MAX_STEPS)
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
            )
        )
    return records


_MAX_STEPS = 100_000  # RunConfig.steps' bound


def _log_to_parent(
    tracker: Tracker, experiment: Experiment, report: ExperimentReport, png: bytes, now: RunStatus
) -> None:
    """The report's numbers and figure as artifacts of the MLflow parent run; the parent ends with the
    experiment. Best effort: a failure is logged, the report is served anyway."""
    parent = experiment.mlflow_run_id
    if parent is None:
        return
    try:
        tracker.log_dict(parent, report.model_dump(mode="json"), "report/report.json")
        tracker.log_png(parent, png, "report/accuracy_vs_budget.png")
        if now in _MLFLOW_END_STATES:
            tracker.end_run(parent, _MLFLOW_END_STATES[now])
    except Exception as err:
        logger.warning("report not logged to MLflow", experiment_id=experiment.id, error=str(err))
