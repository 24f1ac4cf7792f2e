"""The experiment report on hand-made rows: two arms × two seeds × three problems, budgets 10/20.

Values are multiples of 1/4, so sums and differences are exact in floating point. Hand-computed means
(grpo, end, mean over seeds of the mean over problems a, b, c):
  budget 10: seed 0 (.25 + .25 + .5)/3 = 1/3, seed 1 (0 + .5 + .75)/3 = 1.25/3 → 2.25/6 = 0.375
  budget 20: seed 0 (.5 + .75 + .75)/3 = 2/3, seed 1 (.5 + .5 + .75)/3 = 1.75/3 → 3.75/6 = 0.625
  anytime score (mean over the grid) 0.5; start 0.25 / 2.75/6 / (0.25 + 2.75/6)/2.
brpo starts where grpo starts and ends 0.25 above it on every problem (`_shifted`).
Intervals are crossed t-intervals (`anytime.stats`); their hand computations are in the tests.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from anytime.experiments.estimates import build_report
from anytime.experiments.figure import report_png
from anytime.experiments.markdown import report_markdown
from anytime.experiments.records import EvaluationPoint, RunRecord
from anytime.experiments.report import ArmResult, ExperimentReport, Method
from anytime.stats import crossed_t_intervals, t_interval

BUDGETS = [10, 20]
Rows = dict[str, list[float]]

GRPO_START: dict[int, Rows] = {
    0: {"a": [0, 0.5], "b": [0.25, 0.5], "c": [0.5, 0.75]},
    1: {"a": [0, 0.25], "b": [0.25, 0.25], "c": [0.5, 0.5]},
}
GRPO_END: dict[int, Rows] = {
    0: {"a": [0.25, 0.5], "b": [0.25, 0.75], "c": [0.5, 0.75]},
    1: {"a": [0, 0.5], "b": [0.5, 0.5], "c": [0.75, 0.75]},
}


def _shifted(rows: Rows, by: dict[str, float] | float) -> Rows:
    shift = by if isinstance(by, dict) else dict.fromkeys(rows, by)
    return {p: [v + shift[p] for v in values] for p, values in rows.items()}


def _point(
    version: int, step: int, rows: Rows | None, accuracy: list[float] | None = None
) -> EvaluationPoint:
    if accuracy is None:
        assert rows is not None
        accuracy = [float(np.mean([v[j] for v in rows.values()])) for j in range(len(BUDGETS))]
    return EvaluationPoint(
        policy_version=version,
        step=step,
        budgets=list(BUDGETS),
        accuracy=accuracy,
        anytime_score=float(np.mean(accuracy)),
        per_problem=rows,
    )


def _run(
    arm: str,
    seed: int,
    start: Rows,
    end: Rows,
    status: str = "succeeded",
    step_metrics: list[tuple[int, dict[str, float]]] | None = None,
) -> RunRecord:
    evaluations = [_point(0, -1, start), _point(4, 3, end)]
    return RunRecord(arm, seed, f"{arm}-{seed}", status, evaluations, step_metrics or [])


def _runs(brpo_end_shift: dict[int, dict[str, float]] | float = 0.25) -> list[RunRecord]:
    runs = []
    for seed in (0, 1):
        shift = brpo_end_shift if isinstance(brpo_end_shift, float) else brpo_end_shift[seed]
        runs.append(_run("grpo", seed, GRPO_START[seed], GRPO_END[seed]))
        runs.append(_run("brpo", seed, GRPO_START[seed], _shifted(GRPO_END[seed], shift)))
    return runs


def _result(report: ExperimentReport, arm: str) -> ArmResult:
    return next(r for r in report.results if r.arm == arm)


# -------------------------------------------------------------------------------------------- report


def test_arm_means_and_intervals_match_hand_computation() -> None:
    report = build_report(["brpo", "grpo"], "grpo", _runs())
    grpo = _result(report, "grpo")
    assert grpo.end is not None and grpo.start is not None and grpo.gain is not None
    assert grpo.end.method is Method.CROSSED
    assert (grpo.end.seeds, grpo.end.problems) == ([0, 1], 3)
    assert [e.mean for e in grpo.end.accuracy] == pytest.approx([0.375, 0.625])
    assert grpo.end.anytime_score.mean == pytest.approx(0.5)
    assert [e.mean for e in grpo.start.accuracy] == pytest.approx([0.25, 2.75 / 6])
    assert [e.mean for e in grpo.gain.accuracy] == pytest.approx([0.125, 0.625 - 2.75 / 6])
    # Budget 10 by hand (test_stats.test_crossed_t_interval_by_hand): V = (1/96 + 1/8 − 1/24)/6 = 1/64,
    # df 1 → 0.375 ± 12.7062047/8.
    at10 = grpo.end.accuracy[0]
    assert (at10.low, at10.high) == pytest.approx((0.375 - 1.58827559, 0.375 + 1.58827559), abs=1e-6)
    # Every column is the crossed interval of the same per-problem values.
    per_problem = [[[*seed[p], sum(seed[p]) / 2] for p in "abc"] for seed in GRPO_END.values()]
    expected = crossed_t_intervals(per_problem)
    got = [*grpo.end.accuracy, grpo.end.anytime_score]
    for e, interval in zip(got, expected, strict=True):
        assert (e.low, e.high) == pytest.approx((interval.low, interval.high), abs=1e-12)
    assert report.seeds == [0, 1] and report.problems_per_evaluation == [3]


def test_constant_paired_difference_gives_a_zero_width_interval_at_that_constant() -> None:
    report = build_report(["brpo", "grpo"], "grpo", _runs(0.25))
    (comparison,) = report.comparisons
    assert (comparison.arm, comparison.reference, comparison.seeds) == ("brpo", "grpo", [0, 1])
    for estimates in (comparison.end, comparison.gain):  # starts are equal, so gain − gain = end − end
        for e in [*estimates.accuracy, estimates.anytime_score]:
            assert (e.mean, e.low, e.high) == (0.25, 0.25, 0.25)
            assert e.sign_test is not None
            assert (e.sign_test.above, e.sign_test.below, e.sign_test.p_value) == (2, 0, 0.5)


def test_paired_difference_is_the_crossed_interval_of_per_problem_differences() -> None:
    shifts = {0: {"a": 0.25, "b": 0.0, "c": 0.25}, 1: {"a": 0.25, "b": 0.25, "c": -0.25}}
    report = build_report(["brpo", "grpo"], "grpo", _runs(shifts))
    (comparison,) = report.comparisons
    assert comparison.end.method is Method.CROSSED and comparison.end.problems == 3
    # The differences are the shifts at both budgets. By hand: MS_problem = 1/32 < MS_residual = 7/96, so
    # the shared problems add nothing and the interval is the t-interval over the seeds' mean differences
    # 1/6 and 1/12: 1/8 ± t(0.975, 1) · (1/24).
    for e in [*comparison.end.accuracy, comparison.end.anytime_score]:
        assert e.mean == pytest.approx((0.5 / 3 + 0.25 / 3) / 2)
        assert (e.low, e.high) == pytest.approx((0.125 - 12.7062047 / 24, 0.125 + 12.7062047 / 24), abs=1e-6)
        assert e.sign_test is not None and (e.sign_test.above, e.sign_test.below) == (2, 0)
    assert [e.mean for e in comparison.gain.accuracy] == pytest.approx([0.125, 0.125])


def test_missing_per_problem_values_fall_back_to_a_t_interval_over_seeds() -> None:
    ends = {
        ("grpo", 0): [0.5, 0.5],
        ("grpo", 1): [0.7, 0.7],
        ("brpo", 0): [0.75, 0.5],
        ("brpo", 1): [1.0, 0.5],
    }
    runs = [
        RunRecord(
            arm,
            seed,
            f"{arm}-{seed}",
            "succeeded",
            [_point(0, -1, None, [0.5, 0.5]), _point(2, 1, None, end)],
            [],
        )
        for (arm, seed), end in ends.items()
    ]
    report = build_report(["brpo", "grpo"], "grpo", runs)
    grpo = _result(report, "grpo")
    assert grpo.end is not None and grpo.end.method is Method.T_OVER_SEEDS and grpo.end.problems is None
    e = grpo.end.accuracy[0]
    assert (e.mean, e.low, e.high) == pytest.approx((0.6, 0.6 - 1.27062047, 0.6 + 1.27062047), abs=1e-6)
    (comparison,) = report.comparisons
    d = comparison.end.accuracy[0]  # per-seed differences 0.25 and 0.3
    assert comparison.end.method is Method.T_OVER_SEEDS
    assert d.mean == pytest.approx(0.275)
    assert d.high is not None and d.high - d.mean == pytest.approx(
        12.7062047 * np.std([0.25, 0.3], ddof=1) / np.sqrt(2), abs=1e-6
    )
    assert d.sign_test is not None and d.sign_test.p_value == 0.5
    tie = comparison.end.accuracy[1].sign_test  # per-seed differences 0.5 − 0.5 = 0 and 0.5 − 0.7
    assert tie is not None and (tie.above, tie.below, tie.ties, tie.p_value) == (0, 1, 1, 1.0)
    assert "†" in report_markdown(report)


def test_seeds_on_different_problems_fall_back_to_the_t_interval_over_seed_means() -> None:
    # grpo's seed 1 is evaluated on problems a, b, d (not crossed with seed 0's a, b, c): each seed mean
    # then carries its own problems' variance, and the interval is the t-interval over the seed means.
    runs = _runs()
    renamed = {("d" if p == "c" else p): v for p, v in GRPO_END[1].items()}
    runs[2] = _run("grpo", 1, {("d" if p == "c" else p): v for p, v in GRPO_START[1].items()}, renamed)
    grpo = _result(build_report(["grpo"], "grpo", [r for r in runs if r.arm == "grpo"]), "grpo")
    assert grpo.end is not None and grpo.end.method is Method.T_OVER_SEEDS and grpo.end.problems == 3
    at10 = grpo.end.accuracy[0]  # seed means 1/3 and 5/12
    expected = t_interval([1 / 3, 1.25 / 3])
    assert (at10.mean, at10.low, at10.high) == pytest.approx((expected.mean, expected.low, expected.high))


def test_one_seed_gets_the_t_interval_over_its_problems_marked_as_such() -> None:
    runs = [r for r in _runs() if r.seed == 0]
    report = build_report(["brpo", "grpo"], "grpo", runs)
    grpo = _result(report, "grpo")
    assert grpo.end is not None and grpo.end.method is Method.OVER_PROBLEMS
    at10 = grpo.end.accuracy[0]
    # Seed 0's problems at budget 10 end at 0.25, 0.25, 0.5: mean 1/3, sd √(3/144) = 0.1443, t(0.975, 2)
    # = 4.303, half-width 4.303 · 0.1443 / √3 = 0.3586.
    assert at10.mean == pytest.approx(1 / 3)
    assert (at10.low, at10.high) == pytest.approx((1 / 3 - 0.3586, 1 / 3 + 0.3586), abs=1e-4)
    (c,) = report.comparisons
    assert c.end.method is Method.OVER_PROBLEMS  # brpo is grpo + 0.25 on every problem
    assert (c.end.anytime_score.mean, c.end.anytime_score.low) == pytest.approx((0.25, 0.25))
    markdown = report_markdown(report)
    assert "‡" in markdown and "not another training seed" in markdown
    report_png(report)


def test_one_seed_on_one_problem_has_no_interval() -> None:
    runs = [_run(arm, 0, {"a": GRPO_START[0]["a"]}, {"a": GRPO_END[0]["a"]}) for arm in ("brpo", "grpo")]
    report = build_report(["brpo", "grpo"], "grpo", runs)
    grpo = _result(report, "grpo")
    assert grpo.end is not None and grpo.end.method is Method.CROSSED
    assert (grpo.end.anytime_score.low, grpo.end.anytime_score.high) == (None, None)
    assert "[no CI: one seed]" in report_markdown(report)
    report_png(report)  # draws without bands


def test_failed_and_unfinished_runs_are_excluded_listed_and_flagged() -> None:
    clean = build_report(["brpo", "grpo"], "grpo", _runs())
    odd = {"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]}
    unfinished = RunRecord("grpo", 2, "grpo-2", "succeeded", [_point(0, -1, GRPO_START[0])], [])
    runs = [*_runs(), _run("brpo", 2, odd, odd, status="failed"), unfinished]
    report = build_report(["brpo", "grpo"], "grpo", runs)
    assert report.results == clean.results and report.comparisons == clean.comparisons
    assert report.seeds == [0, 1]
    assert [(r.run_id, r.status, r.reason) for r in report.excluded_runs] == [
        ("brpo-2", "failed", "status failed"),
        ("grpo-2", "succeeded", "no evaluation after training"),
    ]
    markdown = report_markdown(report)
    assert "⚠ 2 run(s) left out" in markdown and "brpo-2" in markdown and "grpo-2" in markdown


def test_variance_ratios_and_training_curves_from_step_metrics() -> None:
    seed0 = [
        (0, {"variance/budget_10/brpo": 0.2, "variance/budget_10/traces": 8.0, "variance/brpo": 0.3,
             "reward/budget_10/mean": 0.1, "anytime/score": 0.5}),
        (1, {"variance/budget_10/brpo": 0.4, "variance/budget_10/v2": 0.8, "reward/budget_10/mean": 0.3}),
    ]  # fmt: skip
    seed1 = [(1, {"variance/budget_10/brpo": 0.5, "variance/brpo": 0.5, "reward/budget_10/mean": 0.5})]
    runs = _runs()
    runs[1] = _run("brpo", 0, GRPO_START[0], _shifted(GRPO_END[0], 0.25), step_metrics=seed0)
    runs[3] = _run("brpo", 1, GRPO_START[1], _shifted(GRPO_END[1], 0.25), step_metrics=seed1)
    report = build_report(["brpo", "grpo"], "grpo", runs)
    ratios = {(r.arm, r.baseline, r.budget): r for r in report.variance_ratios}
    assert set(ratios) == {("brpo", "brpo", 10), ("brpo", "brpo", None), ("brpo", "v2", 10)}  # no `traces`
    at10 = ratios["brpo", "brpo", 10]  # seed means 0.3 and 0.5
    assert (at10.estimate.mean, at10.seeds, at10.steps) == (pytest.approx(0.4), 2, 3)
    assert at10.estimate.high == pytest.approx(0.4 + 12.7062047 * 0.1, abs=1e-6)
    assert ratios["brpo", "brpo", None].estimate.mean == pytest.approx(0.4)  # the summary: seeds 0.3 and 0.5
    assert ratios["brpo", "v2", 10].estimate.low is None  # one seed
    brpo = next(c for c in report.training if c.arm == "brpo")
    assert brpo.steps == [0, 1]
    assert brpo.reward == {10: [pytest.approx(0.1), pytest.approx(0.4)]}
    assert (brpo.anytime_score_metric, brpo.anytime_score) == ("anytime/score", [0.5, None])
    assert brpo.variance == {"brpo": {10: [0.2, 0.45]}, "v2": {10: [None, 0.8]}}
    assert brpo.variance_summary == {"brpo": [0.3, 0.5]}
    grpo = next(c for c in report.training if c.arm == "grpo")
    assert (grpo.steps, grpo.anytime_score_metric) == ([], None)
    assert "Variance ratios" in report_markdown(report)


def test_report_is_deterministic_and_round_trips_through_json() -> None:
    shifts = {0: {"a": 0.25, "b": 0.0, "c": 0.25}, 1: {"a": 0.25, "b": 0.25, "c": -0.25}}
    one = build_report(["brpo", "grpo"], "grpo", _runs(shifts))
    two = build_report(["brpo", "grpo"], "grpo", list(reversed(_runs(shifts))))
    assert one == two
    assert ExperimentReport.model_validate_json(one.model_dump_json()) == one
    json.loads(one.model_dump_json())


def test_markdown_names_every_arm_and_the_reference() -> None:
    report = build_report(["brpo", "brpo-v2", "grpo"], "grpo", _runs())
    markdown = report_markdown(report)
    assert Method.CROSSED.value in markdown  # the header names the interval
    assert "| brpo | 2 | 0.354 [" in markdown  # brpo starts as grpo: (0.25 + 2.75/6)/2
    assert "grpo (reference)" in markdown and "reference: **grpo**" in markdown
    assert "| brpo-v2 | 0 | no run entered the statistics |" in markdown
    assert "+0.250 [0.250, 0.250]" in markdown and "How to read this" in markdown


def test_png_is_a_valid_png() -> None:
    data = report_png(build_report(["brpo", "grpo"], "grpo", _runs()))
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1100, 420)
    alone = report_png(build_report(["grpo"], "grpo", [r for r in _runs() if r.arm == "grpo"]))
    assert alone[:8] == b"\x89PNG\r\n\x1a\n"


# -------------------------------------------------------------------------------------------- errors


def test_a_paired_difference_on_different_problems_is_an_error() -> None:
    runs = _runs()
    moved = {"d" if p == "c" else p: v for p, v in _shifted(GRPO_END[0], 0.25).items()}
    runs[1] = _run("brpo", 0, {"d" if p == "c" else p: v for p, v in GRPO_START[0].items()}, moved)
    with pytest.raises(ValueError, match="same problems"):
        build_report(["brpo", "grpo"], "grpo", runs)


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="reference arm 'ppo'"):
        build_report(["brpo", "grpo"], "ppo", _runs())
    with pytest.raises(ValueError, match="does not name"):
        build_report(["grpo"], "grpo", _runs())
    with pytest.raises(ValueError, match="one run per arm and seed"):
        build_report(["brpo", "grpo"], "grpo", [*_runs(), _runs()[0]])
    elsewhere = [EvaluationPoint(v, step, [10, 30], [0, 0], 0, None) for v, step in [(0, -1), (1, 0)]]
    other_grid = RunRecord("brpo", 5, "brpo-5", "succeeded", elsewhere, [])
    with pytest.raises(ValueError, match="different budget grids"):
        build_report(["brpo", "grpo"], "grpo", [*_runs(), other_grid])


def test_succeeded_is_the_run_status_value() -> None:
    from anytime.db.models import RunStatus
    from anytime.experiments.records import SUCCEEDED

    assert RunStatus.SUCCEEDED.value == SUCCEEDED


def test_import_leaves_torch_and_numpy_unimported() -> None:
    modules = "anytime.experiments.estimates, anytime.experiments.markdown, anytime.experiments.figure"
    code = (
        f"import sys, {modules}; "
        "print(','.join(m for m in ('torch', 'numpy', 'matplotlib', 'sqlalchemy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
