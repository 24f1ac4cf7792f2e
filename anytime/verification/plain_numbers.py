"""The plain-number fast path: math-verify's verdict on two plain numbers, decided exactly in the parent.

Most answers and most ground truths are plain numbers (`42`, `-3`, `2.50`, `\\frac{3}{4}`, `7/2`,
`1,000`), and grading one in a child costs a round trip and a math-verify parse per item for a verdict
that follows from the two values. `grade_plain_numbers` returns that verdict when it is certain and
None otherwise (the caller then grades with math-verify); it never returns any status but correct or
incorrect. Its inputs are the normalised texts the grader children receive (`normalise_answer`,
`truth_texts`), so a decided verdict is the one the child would have returned.

What math-verify 0.9 (sympy 1.14) does with a plain number, which the rules below follow:

- An integer (leading zeros allowed, `1,000`-style thousands groups allowed), a fraction of two
  unsigned integers (`\\frac{a}{b}`, `\\frac ab` with one-digit arguments, `a/b`), optionally signed
  with `-` or `−`, parses to an exact sympy Rational. So does the decimal `0.5` (math-verify rewrites
  that exact text to `\\frac{1}{2}`); any other decimal parses to a 15-digit Float.
- Two Rationals are equal only when their values are equal (`Rational.__eq__`), and when they are not,
  every later test fails too (integer comparison, then `simplify(a - b)` is a non-zero number).
- Two Floats of at most 15 digits and the same value are the same Float. Floats whose values differ by
  more than their rounding to 6 decimals can hide (`MIN_GAP`, and a relative `REL_GAP` for large
  values) fail every test.
- A Float and a Rational never compare equal structurally; math-verify then rounds both to 6 decimals
  (`Expr.round`), which gives the same Float when the decimal has at most 6 decimals and is below 1e9,
  and otherwise falls back on `simplify(a - b)`. Equal values in that range are decided correct;
  nearby unequal values (`1/3` against `0.333333`, which math-verify calls correct) are left to it.

Anything else declines: expressions, units, percentages, `\\frac{-1}{2}`, a zero denominator, numbers
with more than `MAX_DIGITS` digits, a decimal comma, a space after the sign. With several acceptable
truths the verdict is decided only when math-verify would reach it by the same route: truths are tried
in order, and one that is not a plain number before the first match leaves the item to math-verify
(it could time out or raise there). `tests/unit/verification/test_plain_numbers.py` checks every
decided verdict against math-verify, on hand-written pairs and on every gold of the shared data sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from anytime.verdict import Status

MAX_DIGITS = 15  # a Float of more digits gets more precision than 15, and equal values may differ
MIN_GAP = Fraction(2, 10**6)  # over twice the 6-decimal rounding math-verify compares Floats with
REL_GAP = Fraction(1, 10**9)  # far above a 15-digit Float's relative error
MIXED_EQUAL_BELOW = 10**9  # Float = Rational by rounding to 6 decimals holds only below 15 digits
MIXED_EQUAL_DECIMALS = 6
MAX_CHARS = 64  # longer texts are no plain numbers of 15 digits; the regex never sees them

_SIGN = r"(?P<sign>[-−])?"
_PLAIN_NUMBER = re.compile(
    _SIGN
    + r"(?:"
    + r"(?P<thousands>[1-9]\d{0,2}(?:,\d{3})+)"
    + r"|(?P<integer>\d+)"
    + r"|(?P<whole>\d+)\.(?P<fraction>\d+)"
    + r"|\\frac(?:\{(?P<num>\d+)\}|(?P<num1>\d))(?:\{(?P<den>\d+)\}|(?P<den1>\d))"
    + r"|(?P<snum>\d+)/(?P<sden>\d+)"
    + r")"
)


@dataclass(frozen=True)
class PlainNumber:
    """A plain number's exact value and whether math-verify reads it as a Float (15 digits)."""

    value: Fraction
    is_float: bool
    decimals: int = 0  # digits after the point, for a Float


def plain_number(text: str) -> PlainNumber | None:
    """The value of a normalised answer text that is a plain number; None for anything else."""
    match = _PLAIN_NUMBER.fullmatch(text) if len(text) <= MAX_CHARS else None
    if match is None:
        return None
    groups = match.groupdict()
    digits = sum(c.isdigit() for c in text)
    if digits > MAX_DIGITS:
        return None
    sign = -1 if groups["sign"] else 1
    if groups["thousands"] is not None:
        return PlainNumber(sign * Fraction(int(groups["thousands"].replace(",", ""))), False)
    if groups["integer"] is not None:
        return PlainNumber(sign * Fraction(int(groups["integer"])), False)
    if groups["whole"] is not None:
        fraction = groups["fraction"]
        value = sign * Fraction(int(groups["whole"] + fraction), 10 ** len(fraction))
        return PlainNumber(value, is_float=text != "0.5", decimals=len(fraction))
    numerator = groups["num"] or groups["num1"] or groups["snum"]
    denominator = groups["den"] or groups["den1"] or groups["sden"]
    if int(denominator) == 0:
        return None  # math-verify reads x/0 as complex infinity
    return PlainNumber(sign * Fraction(int(numerator), int(denominator)), False)


def _compare(gold: PlainNumber, answer: PlainNumber) -> Status | None:
    """math-verify's verdict on one gold and one answer, or None when it is not certain."""
    if not gold.is_float and not answer.is_float:
        return Status.CORRECT if gold.value == answer.value else Status.INCORRECT
    gap = abs(gold.value - answer.value)
    if gap > max(MIN_GAP, REL_GAP * max(abs(gold.value), abs(answer.value))):
        return Status.INCORRECT
    if gap != 0:
        return None  # close but unequal: math-verify's rounding to 6 decimals decides
    if gold.is_float and answer.is_float:
        return Status.CORRECT
    decimals = max(gold.decimals, answer.decimals)
    if abs(gold.value) < MIXED_EQUAL_BELOW and decimals <= MIXED_EQUAL_DECIMALS:
        return Status.CORRECT
    return None


def grade_plain_numbers(answer: str, truths: tuple[str, ...]) -> Status | None:
    """Correct or incorrect exactly as math-verify would grade `answer` against `truths`; None if unsure.

    Both are normalised texts (the verdict cache's key). Truths are tried in math-verify's order.
    """
    parsed_answer = plain_number(answer)
    if parsed_answer is None:
        return None
    for truth in truths:
        gold = plain_number(truth)
        if gold is None:
            return None
        verdict = _compare(gold, parsed_answer)
        if verdict is not Status.INCORRECT:
            return verdict  # correct, or unsure (None)
    return Status.INCORRECT
