"""`/v1/experiments`: paired arms × seeds of runs; create, list, read, cancel, resume, report.

An experiment's runs are ordinary runs: stored by `repository.create_run` and sent to the driver by the
scheduler, as `POST /v1/runs` does, all stored in one transaction. Which arms may be compared, and each
arm × seed's config, are `anytime.experiments.pairing`'s rules; the report is `anytime.experiments`' too
(read from SQL, estimated, rendered); this module turns them into HTTP.

MLflow: the experiment is a parent run (created here, best effort) and the driver tags each member run
as its child (`mlflow.parentRunId`), so MLflow's compare view works per experiment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from anytime.db import experiments, repository
from anytime.db.experiments import Experiment, PlannedRun
from anytime.db.models import RunStatus, new_run_id
from anytime.experiments.estimates import build_report
from anytime.experiments.figure import report_png
from anytime.experiments.markdown import report_markdown
from anytime.experiments.pairing import paired_config, pairing_problems
from anytime.experiments.report import ExperimentReport
from anytime.experiments.report_inputs import run_records
from anytime.logging import get_logger
from anytime.problems import Contamination
from anytime.run_config import RunConfig, flat_location
from anytime.tracking import LazyMlflowTracker, Tracker
from services.api.deps import BAD_BODY, RUN_ID_PATTERN, Offset, SchedulerDep, SessionDep, SettingsDep
from services.api.routes.runs import (
    DriverHoldsRun,
    NotScheduled,
    cancel_one,
    prepare_resume,
    send_to_driver,
)
from services.api.run_inputs import InputReport, inspect_run_inputs
from services.api.schemas import ExperimentOut, ExperimentSpec, Page
from services.api.settings import ApiSettings

logger = get_logger(__name__)
router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

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
    contamination = _require_inputs(configs, settings)
    return [
        PlannedRun(arm, seed, _run_config(spec, arm, seed), contamination[arm])
        for seed in spec.seeds
        for arm in spec.arms
    ]


def _run_config(spec: ExperimentSpec, arm: str, seed: int) -> RunConfig:
    return paired_config(spec.name, spec.base, arm, spec.arms[arm], seed)


def _arm_configs(spec: ExperimentSpec) -> dict[str, RunConfig]:
    """Each arm's config at the first seed (seeds change nothing that could fail validation)."""
    configs: dict[str, RunConfig] = {}
    errors: list[dict[str, Any]] = []
    for arm in spec.arms:
        try:
            configs[arm] = _run_config(spec, arm, spec.seeds[0])
        except ValidationError as err:
            written = {**spec.base, **spec.arms[arm]}
            errors += [
                {
                    "type": e["type"],
                    "loc": ("body", "arms", arm, *flat_location(e["loc"], written)),
                    "msg": f"arm {arm}: {e['msg']}",
                    "input": e.get("input"),
                }
                for e in err.errors(include_url=False, include_context=False)
            ]
    if errors:
        raise RequestValidationError(errors)
    return configs


def _require_pairing(configs: Mapping[str, RunConfig]) -> None:
    problems = pairing_problems(configs)
    if problems:
        raise RequestValidationError([_error(p.loc, p.message) for p in problems])


def _require_inputs(
    configs: Mapping[str, RunConfig], settings: ApiSettings
) -> dict[str, Contamination | None]:
    """`POST /v1/runs`'s input checks for every run, and each arm's contamination (what its runs store):
    once per arm, since a run's seed and name change nothing they look at (and once per distinct set of
    inputs, since datasets are read to check them)."""
    errors: list[dict[str, Any]] = []
    checked: dict[tuple[str, str, str | None, int, int], InputReport] = {}
    for arm, config in configs.items():
        key = _inputs_key(config)
        if key not in checked:
            checked[key] = inspect_run_inputs(config, settings.resolved_data_roots, settings.allow_hub)
        errors += [
            {**_error(("arms", arm, p.field), f"arm {arm}: {p.message}"), "input": config.flat()[p.field]}
            for p in checked[key].problems
        ]
    if errors:
        raise RequestValidationError(errors)
    return {arm: checked[_inputs_key(config)].contamination for arm, config in configs.items()}


def _inputs_key(config: RunConfig) -> tuple[str, str, str | None, int, int]:
    """What the input checks read of a config."""
    evaluation = config.evaluation
    return (config.model, config.dataset, evaluation.dataset, config.problems_per_step, evaluation.problems)


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
            p.arm: {k: v for k, v in p.config.flat().items() if k not in per_seed}
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
    reference: Annotated[
        str | None,
        Query(description="Pair every arm against this arm instead of the experiment's reference."),
    ] = None,
) -> ExperimentReport | Response:
    """Per arm: accuracy at every budget and anytime score at the start and the end, the mean over seeds
    with 95 % intervals; paired differences against the reference arm (or `reference`); variance ratios
    and training curves. `md` and `png` of the experiment's own reference also log the report to its
    MLflow parent run (best effort)."""
    arms = list(experiment.spec["arms"])
    if reference is not None and reference not in arms:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "reference"),
                    "msg": f"reference must be one of the experiment's arms ({', '.join(arms)}); "
                    f"got {reference!r}",
                    "input": reference,
                }
            ]
        )
    members = experiments.members(session, experiment.id)
    try:
        report = build_report(arms, reference or experiment.reference, run_records(session, members))
    except ValueError as err:  # e.g. runs evaluated on different problems or grids: not comparable
        raise HTTPException(status.HTTP_409_CONFLICT, f"experiment {experiment.id}: {err}") from err
    if format == "json":
        return report
    png = report_png(report)
    if report.reference == experiment.reference:
        status_now = experiments.experiment_status(m.run.status for m in members)
        _log_to_parent(tracker, experiment, report, png, status_now)
    if format == "png":
        return Response(png, media_type="image/png")
    return Response(report_markdown(report), media_type="text/markdown; charset=utf-8")


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
