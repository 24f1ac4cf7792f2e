"""Answer extraction and the format rule (docs/method.md §2.4)."""

from __future__ import annotations

import time

import pytest

from anytime.summary_format import SummaryFormat
from anytime.verification.extraction import extract_answer, is_formatted, last_boxed, missing_answer_reason

FMT = SummaryFormat()
CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"
WHOLE = "\n\n**Final Answer**\n"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (CUT + "\\boxed{7}", "7"),
        (WHOLE + "The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        (WHOLE + "\\boxed{1} or rather \\fbox{2}", "2"),
        (WHOLE + "\\boxed{3}\n\n\\boxed{4}", "3"),  # a box in a later paragraph does not count
        (WHOLE + "\n\\boxed{3}", None),  # a blank line after the delimiter: no answer in its paragraph
        ("\\boxed{5}" + WHOLE + "no box", None),  # a box outside the delimiter paragraph
        (WHOLE + "\\boxed{2", None),  # unclosed
        (WHOLE + "\\boxed{1} \\boxed{2", "1"),  # unclosed last box falls back to the earlier one
        ("**Final Answer**\n\\boxed{9}", "9"),
        ("no heading \\boxed{9}", None),
        (WHOLE + "\\boxed{{a}{b}}", "{a}{b}"),
    ],
)
def test_extract_answer(response: str, expected: str | None) -> None:
    assert extract_answer(response, FMT) == expected


def test_last_boxed_matches_nested_braces() -> None:
    assert last_boxed("x \\boxed{\\sqrt{\\frac{a}{b}}} y") == "\\sqrt{\\frac{a}{b}}"


@pytest.mark.parametrize(
    ("closed", "response", "formatted"),
    [
        (True, WHOLE + "\\boxed{1}", True),
        (False, CUT + "\\boxed{1}", True),
        (True, CUT + "\\boxed{1}", False),  # two think-ends
        (False, WHOLE + "\\boxed{1}", False),  # none
        (False, CUT + "\\boxed{1}</think>", False),  # the summary wrote another
    ],
)
def test_format_rule_counts_think_ends(closed: bool, response: str, formatted: bool) -> None:
    assert is_formatted(closed, response, FMT) is formatted


def test_summary_format_validation_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match="must start a new paragraph"):
        SummaryFormat(delimiter="**Final Answer**\n")
    with pytest.raises(ValueError, match="must end with the think-end marker"):
        SummaryFormat(ellipsis="...")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed {5}", "5"),  # spaces before the brace
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are literal, not grouping
        ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
        ("\\fbox{a} \\boxed{b}", "b"),
        ("\\boxedx{1}", None),  # another command
        ("\\boxed{1}}", "1"),  # a stray closing brace after the box
        ("\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}", "{" * 3000 + "1" + "}" * 3000),
    ],
)
def test_last_boxed_brace_matching(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_extraction_is_linear_on_400kb_of_unclosed_boxes() -> None:
    response = WHOLE + "\\boxed{1}" + "\\boxed{" * 57_000  # 400 KB; a rescan per box would take minutes
    started = time.perf_counter()
    assert extract_answer(response, FMT) == "1"
    assert time.perf_counter() - started < 2.0


def test_missing_answer_reasons() -> None:
    assert "no paragraph starts with" in missing_answer_reason("\\boxed{1}", FMT)
    assert "no closed \\boxed{}" in missing_answer_reason(WHOLE + "\\boxed{1", FMT)
