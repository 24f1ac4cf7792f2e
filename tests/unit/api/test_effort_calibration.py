"""`reasoning_effort` and `min_accuracy` read off an evaluation curve (`services.api.inference.effort`): pure
functions on hand-computed curves, the settings that hold the tolerances, and `request_budgets` using them.

Every threshold below is best × (1 - tolerance) with the default tolerances low 0.10, medium 0.03."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.api.inference.budgets import BudgetRefused, request_budgets
from services.api.inference.effort import (
    AccuracyCurve,
    AccuracyUnreachable,
    EffortLevel,
    EffortTolerances,
    calibrate_efforts,
    curve_of,
    effort_mapping,
)
from services.api.inference.schemas import ChatCompletionRequest
from services.api.settings import ApiSettings

TOLERANCES = EffortTolerances(low=0.10, medium=0.03)
BUDGETS = (16, 32, 64, 128)


def _curve(*accuracy: float, budgets: tuple[int, ...] = BUDGETS) -> AccuracyCurve:
    return AccuracyCurve(policy_version=3, budgets=budgets, accuracy=accuracy)


def _budgets(curve: AccuracyCurve) -> dict[str, int] | None:
    levels = calibrate_efforts(curve, TOLERANCES)
    return None if levels is None else {effort: level.budget for effort, level in levels.items()}


def test_a_rising_curve_gives_three_budgets() -> None:
    # best 0.80 at 128; low needs 0.72 (0.73 at 32), medium 0.776 (0.78 at 64), high 0.80 (128).
    levels = calibrate_efforts(_curve(0.40, 0.73, 0.78, 0.80), TOLERANCES)
    assert levels is not None
    assert levels["low"] == EffortLevel(budget=32, threshold=pytest.approx(0.72), accuracy=0.73)
    assert levels["medium"] == EffortLevel(budget=64, threshold=pytest.approx(0.776), accuracy=0.78)
    assert levels["high"] == EffortLevel(budget=128, threshold=0.80, accuracy=0.80)


def test_an_accuracy_exactly_at_the_threshold_reaches_it() -> None:
    # 0.8 × 0.9 is 0.7200000000000001 in floats: 18/25 = 0.72 must still count for `low`.
    assert 0.8 * (1 - 0.10) > 0.72
    assert _budgets(_curve(0.40, 18 / 25, 0.78, 0.80)) == {"low": 32, "medium": 64, "high": 128}
    assert _budgets(_curve(0.40, 0.7199, 0.78, 0.80)) == {"low": 64, "medium": 64, "high": 128}


def test_a_tie_for_the_best_goes_to_the_smaller_budget() -> None:
    # best 0.80 at 32, 64 and 128: high is 32; 0.50 at 16 is below every threshold.
    assert _budgets(_curve(0.50, 0.80, 0.80, 0.80)) == {"low": 32, "medium": 32, "high": 32}


def test_a_best_at_the_smallest_budget_maps_every_effort_there() -> None:
    assert _budgets(_curve(0.90, 0.60, 0.30, 0.10)) == {"low": 16, "medium": 16, "high": 16}


def test_a_non_monotone_curve_is_read_as_measured() -> None:
    # best 0.80 at 64; low needs 0.72: 0.75 at 16 already does (the dip at 32 does not matter);
    # medium needs 0.776: only 64.
    assert _budgets(_curve(0.75, 0.50, 0.80, 0.60)) == {"low": 16, "medium": 64, "high": 64}


def test_an_all_zero_curve_calibrates_nothing_and_the_default_says_why() -> None:
    curve = _curve(0.0, 0.0, 0.0, 0.0)
    assert calibrate_efforts(curve, TOLERANCES) is None
    mapping = effort_mapping(curve, TOLERANCES, default_budget=100, no_curve="unused")
    assert mapping.source == "default"
    assert {e: level.budget for e, level in mapping.levels.items()} == {"low": 25, "medium": 100, "high": 400}
    assert "accuracy 0 at every budget" in mapping.note and "policy version 3" in mapping.note
    with pytest.raises(AccuracyUnreachable, match=r"reaches at best 0.0 \(at budget 16\)"):
        mapping.budget_reaching(0.1)


def test_no_curve_keeps_the_default_and_says_so() -> None:
    mapping = effort_mapping(None, TOLERANCES, default_budget=1024, no_curve="the model has no evaluation")
    assert mapping.source == "default" and mapping.curve is None
    assert [mapping.budget(e) for e in ("low", "medium", "high")] == [256, 1024, 4096]
    assert mapping.note.startswith("the model has no evaluation: efforts are ¼, 1 and 4 ×")
    with pytest.raises(AccuracyUnreachable, match="needs the model's evaluation curve"):
        mapping.budget_reaching(0.5)


def test_min_accuracy_is_the_smallest_budget_reaching_it() -> None:
    mapping = effort_mapping(_curve(0.40, 0.73, 0.78, 0.80), TOLERANCES, 1024, "unused")
    assert mapping.source == "evaluation"
    assert [mapping.budget_reaching(a) for a in (0.1, 0.40, 0.41, 0.78, 0.8)] == [16, 16, 32, 64, 128]
    with pytest.raises(AccuracyUnreachable) as error:
        mapping.budget_reaching(0.9)
    assert "no evaluated budget reaches accuracy 0.9" in str(error.value)
    assert "at best 0.8 (at budget 128)" in str(error.value)


def test_tighter_tolerances_never_think_less() -> None:
    strict = EffortTolerances(low=0.0, medium=0.0)
    curve = _curve(0.75, 0.50, 0.80, 0.60)
    assert _budgets(curve) == {"low": 16, "medium": 64, "high": 64}
    levels = calibrate_efforts(curve, strict)
    assert levels is not None and {e: lv.budget for e, lv in levels.items()} == {
        "low": 64,
        "medium": 64,
        "high": 64,
    }


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"low": 0.03, "medium": 0.10}, "low >= medium >= high"),
        ({"low": 1.0, "medium": 0.03}, "in [0, 1)"),
        ({"low": 0.10, "medium": -0.01}, "in [0, 1)"),
    ],
)
def test_bad_tolerances_say_how_to_fix_them(fields: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace(")", r"\)")):
        EffortTolerances(**fields)


@pytest.mark.parametrize(
    ("budgets", "accuracy", "words"),
    [
        ((16, 32), (0.5,), "one accuracy per budget"),
        ((), (), "at least one budget"),
        ((32, 16), (0.5, 0.6), "ascending"),
        ((16, 16), (0.5, 0.6), "ascending"),
        ((16, 32), (0.5, 1.2), r"in \[0, 1\]"),
        ((16, 32), (0.5, float("nan")), r"in \[0, 1\]"),
    ],
)
def test_a_curve_that_is_not_one_is_refused(
    budgets: tuple[int, ...], accuracy: tuple[float, ...], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        AccuracyCurve(1, budgets, accuracy)


def test_a_row_becomes_a_curve_with_its_intervals() -> None:
    curve = curve_of(2, [16, 32], [0.25, 0.5], [0.1, 0.3], [0.4, 0.7])
    assert curve.interval_at(32) == (0.3, 0.7) and curve.best_budget == 32
    assert curve_of(2, [16], [0.5]).interval_at(16) is None


def test_the_settings_hold_the_tolerances_and_refuse_crossed_ones() -> None:
    settings = ApiSettings()
    assert settings.effort_tolerances == EffortTolerances(low=0.10, medium=0.03)
    with pytest.raises(ValidationError, match="make the medium tolerance at most the low one"):
        ApiSettings(inference_effort_low_tolerance=0.02, inference_effort_medium_tolerance=0.05)
    with pytest.raises(ValidationError, match="less than 1"):
        ApiSettings(inference_effort_low_tolerance=1.0)


def _body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], **fields}
    )


def test_request_budgets_take_the_effort_and_the_accuracy_from_the_curve() -> None:
    mapping = effort_mapping(_curve(0.40, 0.73, 0.78, 0.80), TOLERANCES, 1024, "unused")
    assert request_budgets(_body(reasoning_effort="low"), 1000, 1024, 4, "c", mapping) == (32,)
    assert request_budgets(_body(reasoning_effort="high"), 1000, 1024, 4, "c", mapping) == (128,)
    assert request_budgets(_body(reasoning_effort="high"), 100, 1024, 4, "c", mapping) == (100,)  # lowered
    assert request_budgets(_body(), 1000, 1024, 4, "c", mapping) == (1000,)  # no effort: the default
    assert request_budgets(_body(min_accuracy=0.75), 1000, 1024, 4, "c", mapping) == (64,)
    with pytest.raises(BudgetRefused, match=r"smallest budget reaching accuracy 0\.75 is 64, above"):
        request_budgets(_body(min_accuracy=0.75), 60, 1024, 4, "c", mapping)
    with pytest.raises(BudgetRefused, match=r"at best 0\.8 \(at budget 128\)"):
        request_budgets(_body(min_accuracy=0.95), 1000, 1024, 4, "c", mapping)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"min_accuracy": 0.9, "budget": 8}, "give `min_accuracy` alone"),
        ({"min_accuracy": 0.9, "reasoning_effort": "low"}, "give `min_accuracy` alone"),
        ({"min_accuracy": 0}, "greater than 0"),
        ({"min_accuracy": 1.5}, "less than or equal to 1"),
    ],
)
def test_min_accuracy_comes_alone_and_is_a_fraction(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _body(**fields)
