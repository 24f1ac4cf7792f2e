"""The published experiment (`docs/results/`): one report, its Markdown the rendering of its JSON, made on
the foundations issue 24 asked for, and the README's Results quoting its numbers, not typed ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anytime.experiments.markdown import format_estimate, report_markdown
from anytime.experiments.report import ExperimentReport

REPO = Path(__file__).resolve().parents[3]
RESULTS = REPO / "docs" / "results"


@pytest.fixture(scope="module")
def report() -> ExperimentReport:
    return ExperimentReport.model_validate_json((RESULTS / "science-report.json").read_text())


def _results_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Results\n")
    return readme[start : readme.index("\n## ", start + 1)]


@pytest.fixture(scope="module")
def against_v2() -> ExperimentReport:
    """The same experiment's rows paired against `ar-uniform-v2` (`--reference ar-uniform-v2`)."""
    return ExperimentReport.model_validate_json(
        (RESULTS / "science-report-vs-ar-uniform-v2.json").read_text()
    )


def test_the_markdown_and_the_png_are_the_json_report(
    report: ExperimentReport, against_v2: ExperimentReport
) -> None:
    assert (RESULTS / "science-report.md").read_text() == report_markdown(report)
    assert (RESULTS / "science-report.png").read_bytes().startswith(b"\x89PNG")
    assert (RESULTS / "science-report-vs-ar-uniform-v2.md").read_text() == report_markdown(against_v2)
    assert against_v2.reference == "ar-uniform-v2"
    assert [r.run_ids for r in against_v2.results] == [r.run_ids for r in report.results]  # the same runs


def test_the_experiment_is_the_one_asked_for(report: ExperimentReport) -> None:
    assert report.arms == ["grpo", "grpo-linear", "grpo-decouple", "ar-uniform", "ar-uniform-v2"]
    assert report.reference == "grpo" and len(report.seeds) >= 6
    assert report.problems_per_evaluation and min(report.problems_per_evaluation) >= 64
    assert not report.excluded_runs
    for result in report.results:
        assert result.end is not None and len(result.seeds) == len(report.seeds)
    for arm in report.settings:  # held out means held out
        assert (arm.eval_problems, arm.in_training) == (min(report.problems_per_evaluation), 0), arm.arm
    loss_constants = {arm.resolved["loss_normalizer"] for arm in report.settings}
    assert len(loss_constants) == 1  # one loss constant for every arm


def test_the_readme_quotes_the_report(report: ExperimentReport) -> None:
    section = _results_section()
    for result in report.results:
        assert result.end is not None
        assert format_estimate(result.end.anytime_score) in section, result.arm
    for comparison in report.comparisons:
        score = comparison.end.anytime_score
        assert format_estimate(score, signed=True) in section, comparison.arm
        assert score.sign_test is not None
        assert f"p = {score.sign_test.p_value:.3g}" in section, comparison.arm


def test_the_readme_quotes_the_ablation_pairs(against_v2: ExperimentReport) -> None:
    section = _results_section()
    by_arm = {c.arm: c.end for c in against_v2.comparisons}
    decouple, uniform = by_arm["grpo-decouple"], by_arm["ar-uniform"]
    assert (
        f"`grpo-decouple` − `ar-uniform-v2` = {format_estimate(decouple.anytime_score, signed=True)}"
        in section
    )
    assert f"(@ 32: {format_estimate(decouple.accuracy[0], signed=True)})" in section
    assert decouple.anytime_score.sign_test is not None
    assert f"p = {decouple.anytime_score.sign_test.p_value:.3g}" in section
    assert (
        f"`ar-uniform` − `ar-uniform-v2` = {format_estimate(uniform.anytime_score, signed=True)}" in section
    )


def test_the_readme_quotes_figure_3() -> None:
    figure = json.loads((RESULTS / "figure3" / "variance.json").read_text())
    assert (figure["problems"], figure["group"], figure["summaries"], len(figure["budgets"])) == (64, 8, 4, 8)
    assert (RESULTS / "figure3" / "variance.png").read_bytes().startswith(b"\x89PNG")
    section = _results_section()
    largest = {row["budget"]: row for row in figure["per_budget"]}[figure["largest"]["budget"]]
    for name, label in (("v2", "V2"), ("brpo", "BRPO"), ("v1", "V1")):
        ratio = largest[name]["ratio"]
        assert f"{label} {ratio['value']:.3f} [{ratio['low']:.3f}," in section.replace("\n", " "), name


def _trl_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Side by side with TRL")
    return readme[start : readme.index("\n## ", start + 1)]


def _signed(e: dict[str, float]) -> str:
    return f"{e['mean']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]".replace("-", "−").replace("+0", "0")


def test_the_readme_quotes_the_trl_comparison() -> None:
    """Every figure of the README's TRL table comes from `docs/results/vs-trl.json` (benchmarks/vs_trl.py),
    and the comparison was as designed: the same problems and start, 3 seeds, 4 arms."""
    figures = json.loads((RESULTS / "vs-trl.json").read_text())
    section = _trl_section()
    speed = figures["speed"]
    for arm in ("trl-grpo", "trl-grpo-cut", "grpo", "brpo"):
        s = speed[arm]
        assert (
            f"{s['step_s']:.2f} ({s['generate_s']:.2f} / {s['grade_s']:.2f} / {s['learn_s']:.2f})" in section
        )
        assert f"{s['generated_tokens_per_s']:,.0f}" in section
        assert f"{s['peak_rss_mb']:,.0f} MB" in section
    cut = figures["report"]["trl-grpo-cut"]
    assert sorted(cut["seeds"]) == [0, 1, 2] and cut["problems_per_evaluation"] == [64]
    starts = {round(r["start"]["anytime_score"]["mean"], 6) for r in cut["results"]}
    assert len(starts) == 1 and f"start {starts.pop():.3f}" in section
    for result in cut["results"]:
        assert f"{result['end']['anytime_score']['mean']:.3f}" in section
    for comparison in cut["comparisons"]:
        assert _signed(comparison["end"]["anytime_score"]) in section, comparison["arm"]
    shipped = {c["arm"]: c for c in figures["report"]["trl-grpo"]["comparisons"]}
    assert _signed(shipped["brpo"]["end"]["anytime_score"]) in section
    ratios = figures["grpo_vs_trl"]
    for arm in ("trl-grpo", "trl-grpo-cut"):
        assert f"{ratios[arm]['step']:.2f}×" in section and f"{ratios[arm]['per_token']:.2f}×" in section
