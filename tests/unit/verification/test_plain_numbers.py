"""The plain-number fast path agrees with math-verify wherever it gives a verdict.

Two kinds of evidence: a hand-written table (each row: what the fast path says, and what math-verify says,
checked here in-process), and every gold of the shared data sets against its respellings, numerically
equal and nearby variants and other problems' golds. The data is read where it lies (never copied into the
repository); those tests skip when it is absent. Inputs are normalised exactly as the verifier normalises
them before grading (`normalise_answer`, `truth_texts`).
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from anytime.verification.grading import (
    GroundTruth,
    GroundTruthError,
    Status,
    grade_answer,
    normalise_answer,
    truth_texts,
)
from anytime.verification.plain_numbers import PlainNumber, grade_plain_numbers, plain_number
from tests.conftest import REPO

YES, NO = Status.CORRECT, Status.INCORRECT
DATA = REPO.parent / "shared" / "data"
TRAIN_SAMPLE = 1_500

# (answer, ground truth, the fast path's verdict (None: it declines), math-verify's verdict)
TABLE: list[tuple[str, GroundTruth, Status | None, Status]] = [
    # equal values, in every spelling the fast path reads
    ("1/2", "0.5", YES, YES),
    ("0.5", "\\frac12", YES, YES),
    ("$\\frac{1}{2}$", "0.5", YES, YES),
    ("\\frac9{19}", "\\frac{9}{19}", YES, YES),
    ("\\dfrac{6}{4}", "1.5", YES, YES),
    ("\\frac{7}{2}", "3.5", YES, YES),
    ("\\frac{3}{4}", "0.75", YES, YES),
    ("0.75", "3/4", YES, YES),
    ("0.1", "\\frac{1}{10}", YES, YES),  # not a binary fraction: equal after math-verify's 6-decimal rounding
    ("-3", "−3", YES, YES),  # U+2212 is a minus sign to math-verify too
    ("−3", "-3", YES, YES),
    ("10", "10.0", YES, YES),
    ("10.0", "10", YES, YES),
    ("10.00", "10.0", YES, YES),
    ("142", 142.0, YES, YES),
    ("025", "25", YES, YES),
    ("1,000", "1000", YES, YES),
    ("1000", "1,000", YES, YES),
    ("-1,000", "-1000", YES, YES),
    ("1\\,000", "1000", YES, YES),  # the thin space is removed by normalisation
    ("0", "-0", YES, YES),
    ("0.0", "0", YES, YES),
    ("-0.0", "0", YES, YES),
    ("0.1234567", "0.1234567", YES, YES),
    # different values
    ("3", "4", NO, NO),
    ("-3", "3", NO, NO),
    ("\\frac{1}{3}", "0.33", NO, NO),
    ("2.5", "2.6", NO, NO),
    # several acceptable answers, tried in order
    ("7", ["6", "7"], YES, YES),
    ("8", ["6", "7"], NO, NO),
    ("7", ["7", "x+1"], YES, YES),
    ("7", ["x+1", "7"], None, YES),  # math-verify grades x+1 first: that could time out
    # not plain numbers, or too close to call: math-verify decides
    ("x+1", "1", None, NO),
    ("\\sqrt{2}", "1.414214", None, YES),
    ("2^{10}", "1024", None, YES),
    ("0.333333", "\\frac13", None, YES),  # rounded to 6 decimals: equal for math-verify
    ("\\frac13", "0.333333", None, YES),
    ("1.000001", "1", None, NO),
    ("1.0000001", "1", None, NO),
    ("1,0000", "10000", None, NO),  # not thousands groups: a set to math-verify
    ("3,4", "34", None, NO),
    ("0,5", "0.5", None, NO),
    ("50\\%", "50", None, YES),
    ("\\frac{1}{0}", "1", None, NO),
    ("\\frac{-1}{2}", "-0.5", None, YES),
    ("- 3", "-3", None, YES),
    ("+5", "5", None, YES),
    ("5.", "5", None, YES),
    (".5", "0.5", None, YES),
    ("1e3", "1000", None, NO),
    ("3\\frac{1}{2}", "3.5", None, YES),
    ("1234567890123456", "1234567890123456", None, YES),  # over 15 digits
]


def _fast(answer: str, ground_truth: GroundTruth) -> Status | None:
    return grade_plain_numbers(normalise_answer(answer), truth_texts(ground_truth))


def _math_verify(answer: str, ground_truth: GroundTruth) -> Status:
    return grade_answer(normalise_answer(answer), truth_texts(ground_truth))


@pytest.mark.parametrize(("answer", "ground_truth", "fast", "math_verify"), TABLE)
def test_table(answer: str, ground_truth: GroundTruth, fast: Status | None, math_verify: Status) -> None:
    assert fast is None or fast is math_verify, "the table itself contradicts math-verify"
    assert _fast(answer, ground_truth) is fast
    assert _math_verify(answer, ground_truth) is math_verify


def _read(text: str) -> PlainNumber:
    number = plain_number(text)
    assert number is not None, text
    return number


def test_plain_number_values() -> None:
    assert _read("−\\frac{6}{4}") == _read("-3/2") == PlainNumber(Fraction(-3, 2), is_float=False)
    assert not _read("0.5").is_float and _read("0.50").is_float  # math-verify rewrites exactly "0.5"
    assert _read("12,345,678").value == Fraction(12345678)
    for text in ["", "-", "1.", ".5", "1,23", "1.5.2", "\\frac{1}{2}3", "\\frac123", "1/0", "x"]:
        assert plain_number(text) is None, text


# -- every gold of the shared data sets ---------------------------------------------------------------


def _golds(paths: list[Path]) -> list[tuple[str, ...]]:
    golds = []
    for path in paths:
        for problem in json.loads(path.read_text()):
            try:
                golds.append(truth_texts(problem["answer"]))
            except GroundTruthError:
                continue  # a bad gold is the verifier's error status, not a fast-path question
    return golds


def _variants(text: str) -> set[str]:
    """The gold respelled, and numbers equal or close to it (the boundary cases of the rules)."""
    number = plain_number(text)
    spelled = {text, f"${text}$", f" {text} ", text.replace("\\frac", "\\dfrac")}
    if number is None:
        return spelled
    sign, size = ("-" if number.value < 0 else ""), abs(number.value)
    out = spelled | {f"−{text.lstrip('-−')}" if sign else f"-{text}"}
    if size.denominator == 1:
        n = size.numerator
        out |= {f"{sign}{n}", f"{sign}{n}.0", f"{sign}{n}.00", f"{sign}0{n}", f"{sign}{n:,}"}
        out |= {f"{sign}{2 * n}/2", f"{sign}\\frac{{{n}}}{{1}}", f"{sign}{n + 1}", f"{sign}{n * 10}"}
        out |= {f"{sign}{n}.000001", f"{sign}{n}.000003", f"{sign}{n}.0000001"}
    else:
        p, q = size.numerator, size.denominator
        out |= {f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}{p}/{q}", f"{sign}\\frac{{{2 * p}}}{{{2 * q}}}"}
        out |= {f"{sign}{float(size):.6f}", f"{sign}{float(size)}", f"{sign}{float(size):.3f}"}
        out |= {f"{sign}{float(size) + 1e-5:.6f}", f"{sign}{float(size) + 1e-6:.6f}"}
        if p < 10 and q < 10:
            out.add(f"{sign}\\frac{p}{q}")
    return out


def _pairs(golds: list[tuple[str, ...]], seed: int = 0) -> set[tuple[tuple[str, ...], str]]:
    """(truths, normalised answer): variants of each gold, its neighbours in value and random golds."""
    rng = random.Random(seed)
    texts = sorted({text for gold in golds for text in gold})
    numbers = sorted((t for t in texts if plain_number(t)), key=lambda t: _read(t).value)
    rank = {text: index for index, text in enumerate(numbers)}
    pairs = set()
    for gold in golds:
        for text in gold:
            pairs |= {(gold, normalise_answer(v)) for v in _variants(text)}
            if text in rank:  # the nearest other values: the ones a rounding rule could confuse
                neighbours = numbers[max(0, rank[text] - 2) : rank[text] + 3]
                pairs |= {(gold, n) for n in neighbours}
        pairs |= {(gold, rng.choice(numbers)) for _ in range(4)}
        pairs |= {(gold, normalise_answer(rng.choice(texts))) for _ in range(2)}
    return pairs


def _check_agreement(golds: list[tuple[str, ...]]) -> int:
    disagreements, decided = [], 0
    for truths, answer in sorted(_pairs(golds)):
        fast = grade_plain_numbers(answer, truths)
        if fast is None:
            continue
        decided += 1
        reference = grade_answer(answer, truths)
        if fast is not reference:
            disagreements.append((answer, truths, fast.value, reference.value))
    assert not disagreements, f"{len(disagreements)} verdicts differ from math-verify: {disagreements[:10]}"
    return decided


def _data(folder: str) -> list[Path]:
    paths = sorted((DATA / folder).glob("*.json"))
    if not paths:
        pytest.skip(f"no data sets under {DATA / folder} (the shared data sits next to the repository)")
    return paths


@pytest.mark.slow
def test_agrees_with_math_verify_on_every_test_set_gold() -> None:
    assert _check_agreement(_golds(_data("test"))) > 5_000  # the fast path really decides most of these


@pytest.mark.slow
def test_agrees_with_math_verify_on_training_golds() -> None:
    # A fixed sample: all 7,500 golds (38,000 decided pairs, none differing) take a minute of CPU.
    golds = _golds(_data("train"))
    assert _check_agreement(random.Random(0).sample(golds, min(len(golds), TRAIN_SAMPLE))) > 5_000
