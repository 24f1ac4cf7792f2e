"""Grading with math-verify against string, number and list ground truths (in-process, no time limit)."""

from __future__ import annotations

import pytest

from anytime.verification.grading import (
    GroundTruthError,
    Status,
    grade_answer,
    has_control_characters,
    normalise_answer,
    truth_texts,
)

EQUIVALENT = [
    # fractions and decimals
    ("\\frac{1}{2}", "0.5"),
    ("0.5", "\\frac{1}{2}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("1/2", "\\frac12"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\tfrac{3}{4}", "0.75"),
    ("\\frac{14}{3}", "4\\frac{2}{3}"),
    # surds
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("\\sqrt{3}/2", "\\frac{\\sqrt3}{2}"),
    # tuples and intervals
    ("(1,2)", "(1, 2)"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("[0,1)", "[0, 1)"),
    ("(-\\infty, 2]", "(-\\infty,2]"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    # symbolic forms
    ("x^2+2x+1", "(x+1)^2"),
    ("p - q", "p-q"),
    ("x=2", "2"),
    # π
    ("\\pi", "\\pi"),
    ("2\\pi", "6.283185307"),
    # negative numbers, numbers, boxed and list ground truths
    ("-3", "-3"),
    ("-3", "\\boxed{-3}"),
    ("7", 7),
    ("142", 142.0),
    ("025", "25"),
    ("5", ["4", "5"]),
    ("2^{1009}", ["$2^{1009}$"]),
    # spacing and units that do not change the value
    ("1\\,000", "1000"),
    ("90^\\circ", "90"),
    ("\\text{Evelyn}", "\\text{Evelyn}"),
]

DIFFERENT = [
    ("-3", "3"),
    ("6", "7"),
    ("(1,2)", "(2,1)"),
    ("[0,1]", "[0,1)"),
    ("\\frac{1}{3}", "0.33"),
    ("a", "b"),
    ("3", ["4", "5"]),
    ("\\sqrt{2}", "2"),
]


@pytest.mark.parametrize(("extracted", "truth"), EQUIVALENT)
def test_equivalent_answers_are_correct(extracted: str, truth: object) -> None:
    assert grade_answer(extracted, truth) is Status.CORRECT  # type: ignore[arg-type]


@pytest.mark.parametrize(("extracted", "truth"), DIFFERENT)
def test_wrong_answers_are_incorrect(extracted: str, truth: object) -> None:
    assert grade_answer(extracted, truth) is Status.INCORRECT  # type: ignore[arg-type]


@pytest.mark.parametrize("extracted", [None, "", "   "])
def test_no_answer_is_unparseable(extracted: str | None) -> None:
    assert grade_answer(extracted, "7") is Status.UNPARSEABLE


@pytest.mark.parametrize("extracted", ["4\x00", "\x004", "4\x01", "\x1b[0m4", "4\x7f", "4\x85"])
def test_an_answer_with_control_characters_is_unparseable_not_correct(extracted: str) -> None:
    # math-verify reads around them: without the rule, "4\x00" and "4\x01" grade correct against 4
    assert grade_answer(extracted, "4") is Status.UNPARSEABLE


@pytest.mark.parametrize(
    ("text", "has"),
    [("4", False), ("a\tb\nc\r", False), ("\u200b4", False), ("4\x00", True), ("\x1f", True), ("\x9f", True)],
)
def test_control_characters_are_those_of_category_cc_but_tab_and_line_breaks(text: str, has: bool) -> None:
    assert has_control_characters(text) is has


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("  \\dfrac{1}{2} ", "\\frac{1}{2}"),
        ("$x$", "x"),
        ("1\\,000\\,000", "1000000"),
        ("a\\,b", "a b"),  # a spacing macro between letters stays a space, never merges tokens
        ("\\pi  r\n", "\\pi r"),
    ],
)
def test_normalise_answer(text: str, normalised: str) -> None:
    assert normalise_answer(text) == normalised


def test_truth_texts_unwrap_boxes_and_keep_list_order() -> None:
    assert truth_texts("\\boxed{\\frac{1}{2}}") == ("\\frac{1}{2}",)
    assert truth_texts(["9.6\n", 3, 2.5]) == ("9.6", "3", "2.5")


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        ([], "empty list"),
        ({"a": 1}, "got dict"),
        (True, "got bool"),
        (["1", None], "got NoneType"),
        ("  ", "empty"),
    ],
)
def test_unusable_ground_truths_are_refused(truth: object, message: str) -> None:
    with pytest.raises(GroundTruthError, match=message):
        truth_texts(truth)  # type: ignore[arg-type]


def test_a_ground_truth_math_verify_cannot_read_is_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(GroundTruthError, match="parses none of the ground truths"):
        grade_answer("1", ("\\text{}",))
