"""The verifier API: the reward rule, every status counted, the verdict cache (real grader processes)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from anytime.verification import Status, Submission, Verdict, Verifier, grade, grade_many
from anytime.verification.cache import CachedVerdict, VerdictCache
from tests.conftest import REPO

CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"  # an inserted ellipsis closes the thought
WHOLE = "\n\n**Final Answer**\n"  # the thought closed itself: nothing inserted


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    with Verifier(timeout_s=10, workers=2) as shared:
        yield shared


@pytest.mark.parametrize(
    ("submission", "status", "formatted", "reward"),
    [
        (Submission(CUT + "\\boxed{\\frac12}", "0.5"), Status.CORRECT, True, 1),
        (Submission(WHOLE + "So \\boxed{7}.", 7, thinking_closed=True), Status.CORRECT, True, 1),
        (Submission(CUT + "\\boxed{7}", ["6", "7"]), Status.CORRECT, True, 1),
        (Submission(CUT + "\\boxed{8}", "7"), Status.INCORRECT, True, 0),
        # the format rule: exactly one </think> across the prefix end and the summary
        (Submission(CUT + "\\boxed{7}", "7", thinking_closed=True), Status.CORRECT, False, 0),
        (Submission(CUT + "\\boxed{7}</think>", "7"), Status.CORRECT, False, 0),
        (Submission(WHOLE + "\\boxed{7}", "7"), Status.CORRECT, False, 0),
        # extraction: missing box, box outside the delimiter paragraph, empty box
        (Submission(CUT + "seven", "7"), Status.UNPARSEABLE, True, 0),
        (Submission("\\boxed{7}" + CUT + "seven", "7"), Status.UNPARSEABLE, True, 0),
        (Submission(CUT + "\\boxed{7}\n\n\\boxed{8}", "8"), Status.INCORRECT, True, 0),
        (Submission(CUT + "\\boxed{ }", "7"), Status.UNPARSEABLE, True, 0),
        # a control character in the box is no answer (math-verify would read "4\x00" as 4)
        (Submission(CUT + "\\boxed{4\x00}", "4"), Status.UNPARSEABLE, True, 0),
        (Submission(CUT + "\\boxed{\x1b[1m4}", "4"), Status.UNPARSEABLE, True, 0),
        # a thinking prefix that ended in EOS scores 0 even when the answer is right
        (Submission(CUT + "\\boxed{7}", "7", ended_in_eos=True), Status.CORRECT, True, 0),
        # a bad ground truth is an error, never a silent 0
        (Submission(CUT + "\\boxed{7}", {"x": 7}), Status.ERROR, True, 0),  # type: ignore[arg-type]
    ],
)
def test_verdicts(
    verifier: Verifier, submission: Submission, status: Status, formatted: bool, reward: int
) -> None:
    verdict = verifier.grade_many([submission])[0]
    assert (verdict.status, verdict.formatted, verdict.reward) == (status, formatted, reward)
    if status not in (Status.CORRECT, Status.INCORRECT):
        assert verdict.message, "an unparseable answer or an error says why"


def test_verdict_record_has_the_contract_fields(verifier: Verifier) -> None:
    record = verifier.grade(CUT + "\\boxed{\\dfrac{1}{2}}", "0.5").to_dict()
    assert record == {"status": "correct", "formatted": True, "reward": 1, "extracted": "\\dfrac{1}{2}"}
    eos = verifier.grade(CUT + "\\boxed{1}", "1", ended_in_eos=True).to_dict()
    assert eos["reward"] == 0 and "EOS" in eos["message"]


def test_every_status_is_counted() -> None:
    with Verifier(timeout_s=1.5, workers=2) as verifier:
        verifier.grade_many(
            [
                Submission(CUT + "\\boxed{1}", "1"),
                Submission(CUT + "\\boxed{2}", "1"),
                Submission(CUT + "no box", "1"),
                Submission(CUT + "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}", "1"),
                Submission(CUT + "\\boxed{1}", []),
            ]
        )
        assert verifier.stats.statuses == {s.value: 1 for s in Status}
        assert verifier.stats.verdicts == 5 and verifier.stats.rewarded == 1


def test_cache_grades_each_normalised_answer_once() -> None:
    # Expressions: plain numbers are decided by the fast path and never reach the cache.
    answers = [
        "\\frac{\\sqrt{2}}{2}",
        "\\dfrac{\\sqrt{2}}{2}",
        " \\frac{\\sqrt{2}}{2} ",
        "$\\frac{\\sqrt{2}}{2}$",
        "\\frac{1}{\\sqrt{2}}",
        "\\sqrt{3}",
    ]
    batch = [Submission(CUT + f"\\boxed{{{a}}}", "\\frac{\\sqrt2}{2}") for a in answers * 5]
    with Verifier(timeout_s=10, workers=2) as verifier:
        first = verifier.grade_many(batch)
        assert verifier.stats.cache_misses == 3  # √2/2 (4 spellings), 1/√2, √3
        assert verifier.stats.cache_hits == len(batch) - 3
        second = verifier.grade_many(batch)
        assert verifier.stats.cache_misses == 3 and verifier.stats.cache_hits == 2 * len(batch) - 3
        assert verifier.stats.hit_rate == pytest.approx(57 / 60)
        assert verifier.stats.plain_numbers == 0
    assert [v.status for v in first] == [v.status for v in second]
    assert [v.extracted for v in first] == [v.extracted for v in second]  # the raw text, not the key
    assert sum(v.status is Status.CORRECT for v in first) == 25 and not first[0].cached and second[0].cached


def test_plain_numbers_are_decided_without_cache_or_grader() -> None:
    answers = ["\\frac{1}{2}", "\\dfrac{1}{2}", "0.5", "1/2", "0.50", "3", "x/2"]
    batch = [Submission(CUT + f"\\boxed{{{a}}}", "\\frac12") for a in answers]
    with Verifier(timeout_s=10, workers=1) as verifier:
        verdicts = verifier.grade_many(batch)
        assert [v.status for v in verdicts] == [Status.CORRECT] * 5 + [Status.INCORRECT] * 2
        assert verifier.stats.plain_numbers == 6 and verifier.stats.cache_misses == 1  # x/2 was graded
        assert all(v.seconds == 0.0 and not v.cached for v in verdicts[:6])
        assert verifier.stats.as_dict()["plain_numbers"] == 6


def test_without_cache_every_answer_is_graded() -> None:
    batch = [Submission(CUT + "\\boxed{\\sqrt{2}}", "\\sqrt2")] * 4
    with Verifier(timeout_s=10, workers=2, cache_size=0) as verifier:
        assert all(v.status is Status.CORRECT for v in verifier.grade_many(batch))
        assert (verifier.stats.cache_hits, verifier.stats.cache_misses) == (0, 4)


def test_verdict_cache_is_lru_and_keeps_no_errors() -> None:
    cache = VerdictCache(max_entries=2)
    for index in range(3):
        cache.put(((f"{index}",), "x"), CachedVerdict(Status.INCORRECT))
    assert cache.get((("0",), "x")) is None and len(cache) == 2
    cache.put((("e",), "x"), CachedVerdict(Status.ERROR, "grader died"))
    assert cache.get((("e",), "x")) is None
    with pytest.raises(ValueError, match="0 disables"):
        VerdictCache(-1)


def test_one_call_functions() -> None:
    assert grade(CUT + "\\boxed{2}", 2).reward == 1
    verdicts = grade_many([Submission(CUT + "\\boxed{2}", "3"), Submission(CUT, "3")], workers=1)
    assert [v.status for v in verdicts] == [Status.INCORRECT, Status.UNPARSEABLE]
    assert Verdict.error("bad line").to_dict()["message"] == "bad line"


def test_verifier_modules_are_torch_free_and_the_parent_never_imports_math_verify() -> None:
    code = (
        "import sys\n"
        "import services.verifier.worker, services.verifier.batch_cli\n"
        "from anytime.verification import Verifier, Submission\n"
        "with Verifier(timeout_s=10, workers=1) as v:\n"
        "    assert v.grade('\\n\\n**Final Answer**\\n\\\\boxed{1}', '1', True).reward == 1\n"
        "heavy = ('torch', 'vllm', 'transformers', 'math_verify', 'sympy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
