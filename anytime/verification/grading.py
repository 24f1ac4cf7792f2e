"""Grading an extracted answer against a ground truth with math-verify, and what grading sees.

A ground truth may be a string (a boxed one is unwrapped), a number or a list of acceptable answers.
Answers and ground truths are normalised (`normalise_answer`, `truth_texts`) before grading, and only the
normalised texts are graded, so two inputs with the same normalised texts get the same verdict: that is
what makes the verdict cache (`anytime.verification.cache`) exact rather than approximate.

`grade_answer` is the in-process grader with math-verify's own (signal-based) timeouts turned off. Calling
it directly has no time limit; `anytime.verification.pool` calls it inside child processes under a hard
wall-clock limit, and `anytime.verification.verifier.Verifier` is the API to use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from anytime.verdict import Status
from anytime.verification.extraction import last_boxed

GroundTruth = str | int | float | list[str | int | float]

# Spacing macros change nothing a grader should read: between digits they separate thousands (`1\,000`,
# which math-verify would read as 1·0), elsewhere they are a space. `\dfrac`/`\tfrac` mean `\frac`.
_THOUSANDS_SPACE = re.compile(r"(?<=\d)\\[,;:!](?=\d)")
_SPACING_MACRO = re.compile(r"(?<!\\)\\[,;:!]")
_FRAC_STYLES = re.compile(r"\\[dt]frac(?![a-zA-Z])")


# Line breaks and tabs are spacing (normalisation folds them); any other control character (NUL, ESC, …)
# means the text is not an answer, and math-verify would otherwise read around it (`4\x00` parses as 4).
_SPACING_CONTROLS = frozenset("\t\n\r")


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character other than a tab or a line break."""
    return any(c not in _SPACING_CONTROLS and unicodedata.category(c) == "Cc" for c in text)


class GroundTruthError(ValueError):
    """The ground truth is unusable (wrong type, empty, or math-verify parses none of its answers)."""


def normalise_answer(text: str) -> str:
    """Whitespace runs → one space, outer `$` dropped, spacing macros and `\\dfrac`/`\\tfrac` rewritten.

    Only rewrites that keep the LaTeX's meaning (never drops a space between tokens, which could merge
    `\\pi r` into `\\pir`).
    """
    text = _SPACING_MACRO.sub(" ", _THOUSANDS_SPACE.sub("", text))
    text = _FRAC_STYLES.sub(r"\\frac", text)
    return " ".join(text.split()).strip("$ ")


def truth_texts(ground_truth: GroundTruth) -> tuple[str, ...]:
    """The acceptable answers as normalised LaTeX texts (boxed ones unwrapped), in the given order."""
    truths: Sequence[object] = ground_truth if isinstance(ground_truth, list) else [ground_truth]
    if not truths:
        raise GroundTruthError("ground truth is an empty list; give at least one acceptable answer")
    texts = []
    for truth in truths:
        if isinstance(truth, bool) or not isinstance(truth, str | int | float):
            raise GroundTruthError(
                f"ground truth must be a string, a number or a list of them; got {type(truth).__name__}"
            )
        text = str(truth)
        boxed = last_boxed(text) if "\\boxed" in text or "\\fbox" in text else None
        text = normalise_answer(boxed if boxed is not None else text)
        if not text:
            raise GroundTruthError(f"ground truth {truth!r} is empty")
        texts.append(text)
    return tuple(texts)


def grade_answer(extracted: str | None, ground_truth: GroundTruth | tuple[str, ...]) -> Status:
    """Correct when the extracted answer equals any acceptable ground truth (math-verify equivalence);
    unparseable when there is none, or it holds a control character (`has_control_characters`).

    A tuple ground truth is taken as already normalised (`truth_texts`). Raises `GroundTruthError` when
    math-verify parses none of the acceptable answers: that is a data problem, not a wrong answer.
    No time limit here (see the module docstring).
    """
    from math_verify import parse, verify  # imported here: the parent process of the pool never needs it

    if extracted is None or not extracted.strip() or has_control_characters(extracted):
        return Status.UNPARSEABLE
    answer = parse(f"${normalise_answer(extracted)}$", parsing_timeout=None)
    if not answer:
        return Status.UNPARSEABLE
    texts = ground_truth if isinstance(ground_truth, tuple) else truth_texts(ground_truth)
    parsed_any = False
    for text in texts:
        gold = parse(f"${text}$", parsing_timeout=None)
        parsed_any = parsed_any or bool(gold)
        if gold and verify(gold, answer, timeout_seconds=None):
            return Status.CORRECT
    if not parsed_any:
        raise GroundTruthError(f"math-verify parses none of the ground truths {list(texts)!r}")
    return Status.INCORRECT
