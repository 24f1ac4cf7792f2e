"""`/v1/runs/{id}/curve`: anytime accuracy vs thinking budget at each evaluation, as JSON or a PNG."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status

from anytime.curve_plot import CurveSeries, accuracy_vs_budget_png, series_label
from anytime.db import repository
from services.api.deps import RunDep, SessionDep
from services.api.schemas import CurveOut, EvaluationOut

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["results"])


@router.get(
    "/curve",
    response_model=CurveOut,
    responses={
        status.HTTP_200_OK: {"content": {"image/png": {}}, "description": "JSON, or a PNG with format=png."},
        status.HTTP_404_NOT_FOUND: {"description": "No run with this id (or, for a PNG, no evaluation yet)."},
    },
)
def get_curve(
    run: RunDep,
    session: SessionDep,
    format: Annotated[Literal["json", "png"], Query(description="json, or png for a plot.")] = "json",
) -> CurveOut | Response:
    """Accuracy at each budget of the evaluation grid, one curve per evaluated policy version, with 95 %
    bootstrap intervals over problems (bands in the PNG) where the evaluation sampled."""
    evaluations = repository.list_evaluations(session, run.id)
    if format == "json":
        return CurveOut(run_id=run.id, evaluations=[EvaluationOut.model_validate(e) for e in evaluations])
    if not evaluations:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run.id} has no evaluation yet: nothing to draw")
    series = [
        CurveSeries(
            series_label(f"version {e.policy_version}", e.num_samples, e.temperature),
            e.budgets,
            e.accuracy,
            e.accuracy_ci_low,
            e.accuracy_ci_high,
        )
        for e in evaluations
    ]
    png = accuracy_vs_budget_png(series, title=f"run {run.name or run.id}: accuracy vs thinking budget")
    return Response(content=png, media_type="image/png")
