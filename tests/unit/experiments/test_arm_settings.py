"""The report says what each arm ran with and whether its held-out problems were held out."""

from __future__ import annotations

from anytime.experiments.estimates import arm_settings
from anytime.experiments.markdown import _contamination_lines
from anytime.experiments.records import RunRecord
from anytime.experiments.report import ArmSettings, ExperimentReport


def _run(seed: int, contamination: dict[str, int] | None, b_max: int = 64) -> RunRecord:
    resolved = {"name": f"e/a/seed{seed}", "seed": seed, "eval_seed": seed, "b_max": b_max}
    return RunRecord("a", seed, f"r{seed}", "succeeded", [], [], resolved, contamination)


def test_an_arm_shows_its_first_runs_config_and_its_worst_contamination() -> None:
    runs = [
        _run(2, {"eval_problems": 8, "in_training": 3}, b_max=32),
        _run(1, {"eval_problems": 8, "in_training": 0}),
    ]
    settings = arm_settings("a", runs)
    assert settings.resolved == {"b_max": 64}  # seed 1's, without the per-seed fields
    assert (settings.eval_problems, settings.in_training) == (8, 3)
    unmeasured = arm_settings("a", [_run(1, None)])
    assert (unmeasured.eval_problems, unmeasured.in_training) == (None, None)


def _report(*settings: ArmSettings) -> ExperimentReport:
    return ExperimentReport(
        arms=[s.arm for s in settings],
        reference=settings[0].arm,
        budgets=[],
        seeds=[],
        problems_per_evaluation=[],
        level=0.95,
        results=[],
        comparisons=[],
        variance_ratios=[],
        training=[],
        excluded_runs=[],
        settings=list(settings),
    )


def test_the_markdown_says_whether_the_held_out_problems_were_held_out() -> None:
    clean = ArmSettings(arm="grpo", resolved={}, eval_problems=32, in_training=0)
    dirty = ArmSettings(arm="brpo", resolved={}, eval_problems=32, in_training=26)
    old = ArmSettings(arm="old", resolved={}, eval_problems=None, in_training=None)
    assert _contamination_lines(_report(clean)) == [
        "Held out: no arm's evaluation problems appear in its training dataset.",
        "",
    ]
    assert _contamination_lines(_report(clean, dirty))[0].startswith(
        "**Contaminated:** arm brpo: 26 of its 32 evaluation problems are also training problems"
    )
    assert _contamination_lines(_report(clean, old)) == [
        "Contamination not measured for: old (created before it was).",
        "",
    ]
