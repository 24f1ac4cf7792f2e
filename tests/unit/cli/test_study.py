"""`anytime study variance`'s record and table on a hand-made study (no model): the paper's comparisons, the
thought lengths, undefined correlations as null, and the figure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anytime.brpo.variance import Estimate, ProblemReturns, VarianceStudy, bootstrap_study
from anytime_cli.study import figure_png, format_table, study_record, thinking_stats
from tests.unit.brpo.test_variance import ALL, HAND, HAND_R

BUDGETS = [4, 8]


def _report(study: VarianceStudy, lengths: list[int], budgets: list[int] = BUDGETS) -> dict[str, Any]:
    return {
        "problems": 2,
        "group": 2,
        "summaries": 1,
        "budgets": budgets,
        "prior": "uniform",
        "discount": 2.0,
        "temperature": 0.6,
        "accuracy": [0.5] * len(budgets),
        "statuses": {"ok": 8},
        "thinking": thinking_stats(lengths, ["think_end"] * (len(lengths) - 1) + ["length"], budgets),
        **study_record(study, budgets),
    }


def _hand_study() -> VarianceStudy:
    problems = [
        ProblemReturns(HAND_R[:2], {n: v[:2] for n, v in HAND.items()}, ALL[:2]),
        ProblemReturns(HAND_R[2:], {n: v[2:] for n, v in HAND.items()}, ALL[2:]),
    ]
    return bootstrap_study(problems, resamples=100, seed=0)


def test_record_keeps_every_number_and_undefined_correlations_are_null() -> None:
    report = _report(_hand_study(), [8, 8, 8, 8])
    first, last = report["per_budget"]
    assert first["budget"] == 4 and first["traces"] == 4
    assert first["v2"]["corr"]["value"] == pytest.approx(2**-0.5) and first["v2"]["ratio"]["value"] == 0.5
    assert first["v1"]["corr"] == {"value": None, "low": None, "high": None}  # V1 = 0: no correlation
    assert json.loads(json.dumps(report))["per_budget"][0]["v1"]["corr"]["value"] is None  # null in the file
    assert "NaN" not in json.dumps(report)
    assert last["v1"]["ratio"]["value"] == pytest.approx(2.0) and last["v1"]["corr"][
        "value"
    ] == pytest.approx(0)
    # At the last budget V2 (= R) < BRPO (1/2) < V1 (2): not the paper's ordering.
    assert report["largest"]["order"] == ["v2", "brpo", "v1"]
    assert report["largest"]["paper_order_holds"] is False
    assert report["first"] == {"budget": 4, "brpo_equals_v2": True, "v1_ratio": pytest.approx(1.0)}
    lines = format_table(report)
    assert lines[1].split()[:3] == ["t", "traces", "accuracy"]
    assert lines[2].split()[:4] == [
        "4",
        "4",
        "0.500",
        "—",
    ]  # t, traces, accuracy, then Corr(V1, R): undefined
    ordering = next(line for line in lines if line.startswith("at t = 8"))
    assert (
        ordering.startswith("at t = 8: V2 0.000") and "< BRPO 0.500" in ordering and "< V1 2.000" in ordering
    )
    assert ordering.endswith("the paper's ordering BRPO ≤ V1 < V2 does not hold (point estimates)")
    assert any(line.startswith("at t = 4: BRPO = V2") and "Corr(V1, R) undefined" in line for line in lines)


def _estimate(value: float, low: float, high: float) -> Estimate:
    return Estimate(value, low, high, 10)


def test_ordering_that_holds_and_whether_intervals_separate() -> None:
    budgets = [1, 2, 3, 4]
    ratios = {
        "brpo": [_estimate(0.2, 0.1, 0.3)] * 3 + [_estimate(0.30, 0.25, 0.40)],
        "v1": [_estimate(1.0, 1.0, 1.0)] * 3 + [_estimate(0.35, 0.30, 0.45)],
        "v2": [_estimate(0.2, 0.1, 0.3)] * 3 + [_estimate(0.60, 0.50, 0.70)],
    }
    corrs = {name: [_estimate(0.5, 0.4, 0.6)] * 4 for name in ratios}
    replicates: dict[str, list[list[float | None]]] = {
        "brpo": [[0.2, 0.2, 0.2, 0.30], [0.2, 0.2, 0.2, 0.28]],
        "v1": [[1.0, 1.0, 1.0, 0.35], [1.0, 1.0, 1.0, 0.36]],
        "v2": [[0.2, 0.2, 0.2, 0.60], [0.2, 0.2, 0.2, 0.65]],
    }
    study = VarianceStudy(ratios, corrs, {n: _estimate(0.5, 0.4, 0.6) for n in ratios}, 2, 0.95, replicates)
    report = _report(study, [1, 2, 3, 4, 5, 5, 5, 2], budgets)
    largest = report["largest"]
    assert largest["order"] == ["brpo", "v1", "v2"] and largest["paper_order_holds"] is True
    assert largest["intervals_separate"] == {"brpo_v1": False, "v1_v2": True}
    paired = largest["paired_difference"]["v1_minus_brpo"]
    assert (
        paired["value"] == pytest.approx(0.05) and paired["low"] > 0
    )  # paired: every resample has V1 > BRPO
    lines = format_table(report)
    ordering = next(line for line in lines if line.startswith("at t = 4"))
    assert ordering == (
        "at t = 4: BRPO 0.300 [0.250, 0.400] < V1 0.350 [0.300, 0.450] < V2 0.600 [0.500, 0.700]: "
        "the paper's ordering BRPO ≤ V1 < V2 holds (point estimates)"
    )
    assert "BRPO vs V1 overlap, V1 vs V2 separate" in lines[lines.index(ordering) + 1]
    # Thoughts 1..5 tokens: 4 of 8 are longer than the 4th budget (t = 4).
    assert report["thinking"]["past_fourth_budget"] == 0.375
    assert any("past the 4th budget (t = 4): 38% of traces" in line for line in lines)


def test_thinking_stats() -> None:
    stats = thinking_stats([10, 20, 30, 40], ["think_end", "think_end", "eos", "length"], [10, 20, 30, 40])
    assert stats["past_budget"] == [0.75, 0.5, 0.25, 0.0] and stats["past_fourth_budget"] == 0.0
    assert (stats["min"], stats["median"], stats["max"], stats["mean"]) == (10, 25, 40, 25)
    assert stats["finish"] == {"eos": 0.25, "length": 0.25, "think_end": 0.5}
    assert thinking_stats([7], ["length"], [8, 16])["past_fourth_budget"] is None


def test_figure_png_from_a_report() -> None:
    report = _report(_hand_study(), [8, 8, 8, 8])
    data = figure_png(report, "tiny")
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
