"""The verifier's Python API: responses in, verdicts out (docs/method.md §2.4).

A verdict is `{status, formatted, reward, extracted}`: the status says what grading found, `formatted`
is the format rule (exactly one `</think>`), and `reward` is 1 only for a correct, formatted answer whose
thinking prefix did not end in EOS. Every status is counted in `Verifier.stats`; none is folded into 0
silently (a verdict that is not `correct` carries a message saying why).

    with Verifier(timeout_s=10, workers=2) as verifier:
        verdicts = verifier.grade_many([Submission(response, ground_truth, thinking_closed=False)])

`grade(...)` and `grade_many(...)` at module level start and stop a verifier for one call (about a second
to start its grader processes); keep a `Verifier` open to grade many batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from anytime.summary_format import SummaryFormat
from anytime.verdict import VerdictRecord
from anytime.verification.cache import CachedVerdict, CacheKey, VerdictCache
from anytime.verification.extraction import extract_answer, is_formatted, missing_answer_reason
from anytime.verification.grading import (
    GroundTruth,
    GroundTruthError,
    Status,
    has_control_characters,
    normalise_answer,
    truth_texts,
)
from anytime.verification.plain_numbers import grade_plain_numbers
from anytime.verification.pool import GradeJob, GraderPool
from anytime.verification.settings import VerifierSettings

DEFAULTS = VerifierSettings.model_fields
EOS_MESSAGE = "the thinking prefix ended in EOS: this cut scores 0 (docs/method.md §2.4)"


@dataclass(frozen=True)
class Submission:
    """One response to grade. `response` is the text after the cut: inserted + delimiter + summary."""

    response: str
    ground_truth: GroundTruth
    thinking_closed: bool = False  # the kept thinking prefix already ends with `</think>`
    ended_in_eos: bool = False  # the kept thinking prefix ends with EOS (scores 0 whatever the answer)


@dataclass(frozen=True)
class Verdict:
    status: Status
    formatted: bool
    reward: int
    extracted: str | None
    message: str | None = None
    seconds: float = 0.0  # time in a grader process (0 for cache hits and answers never graded)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The verdict record (`message` only when there is something to say)."""
        record: dict[str, Any] = {
            "status": self.status.value,
            "formatted": self.formatted,
            "reward": self.reward,
            "extracted": self.extracted,
        }
        if self.message is not None:
            record["message"] = self.message
        return record

    def record(self) -> VerdictRecord:
        """The verdict record the verify task stores by summary id."""
        return VerdictRecord(
            status=self.status,
            formatted=self.formatted,
            reward=self.reward,
            extracted=self.extracted,
            message=self.message,
        )

    @classmethod
    def error(cls, message: str) -> Verdict:
        """For input that never reached grading (e.g. a malformed input line)."""
        return cls(Status.ERROR, formatted=False, reward=0, extracted=None, message=message)


@dataclass
class VerifierStats:
    statuses: Counter[str] = field(default_factory=lambda: Counter({s.value: 0 for s in Status}))
    rewarded: int = 0
    formatted: int = 0
    cache_hits: int = 0  # answers served without grading (cache, or a repeat within the same batch)
    cache_misses: int = 0  # answers sent to a grader process
    plain_numbers: int = 0  # answers decided by the plain-number fast path (never looked up in the cache)
    max_grading_seconds: float = 0.0

    @property
    def verdicts(self) -> int:
        return sum(self.statuses.values())

    @property
    def hit_rate(self) -> float:
        lookups = self.cache_hits + self.cache_misses
        return self.cache_hits / lookups if lookups else 0.0

    def count(self, verdict: Verdict) -> None:
        self.statuses[verdict.status.value] += 1
        self.rewarded += verdict.reward
        self.formatted += int(verdict.formatted)
        self.max_grading_seconds = max(self.max_grading_seconds, verdict.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdicts": self.verdicts,
            "statuses": dict(self.statuses),
            "rewarded": self.rewarded,
            "formatted": self.formatted,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_rate": round(self.hit_rate, 4),
            "plain_numbers": self.plain_numbers,
            "max_grading_seconds": round(self.max_grading_seconds, 3),
        }


@dataclass
class _Prepared:
    """A submission after extraction: either a verdict already, or a key to grade."""

    extracted: str | None
    formatted: bool
    ended_in_eos: bool
    verdict: Verdict | None = None
    key: CacheKey | None = None
    plain_number: bool = False  # the verdict came from the plain-number fast path


class Verifier:
    def __init__(
        self,
        *,
        timeout_s: float = DEFAULTS["timeout_seconds"].default,
        workers: int = DEFAULTS["workers"].default,
        cache_size: int = DEFAULTS["cache_size"].default,
        max_answer_chars: int = DEFAULTS["max_answer_chars"].default,
        fmt: SummaryFormat | None = None,
    ) -> None:
        self.fmt = fmt or SummaryFormat()
        self.timeout_s = timeout_s
        self.max_answer_chars = max_answer_chars
        self.cache = VerdictCache(cache_size)
        self.stats = VerifierStats()
        self.pool = GraderPool(workers, timeout_s)

    @classmethod
    def from_settings(cls, settings: VerifierSettings, fmt: SummaryFormat | None = None) -> Verifier:
        return cls(
            timeout_s=settings.timeout_seconds,
            workers=settings.workers,
            cache_size=settings.cache_size,
            max_answer_chars=settings.max_answer_chars,
            fmt=fmt,
        )

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def grade(
        self,
        response: str,
        ground_truth: GroundTruth,
        thinking_closed: bool = False,
        *,
        ended_in_eos: bool = False,
    ) -> Verdict:
        return self.grade_many([Submission(response, ground_truth, thinking_closed, ended_in_eos)])[0]

    def grade_many(self, submissions: Sequence[Submission]) -> list[Verdict]:
        """One verdict per submission, in order; each answer is graded at most once while it is cached.

        Answers that are plain numbers against plain-number truths are decided here, exactly as
        math-verify would (`anytime.verification.plain_numbers`), and reach neither cache nor grader.
        With the cache on, repeats inside the batch are graded once too; with it off (size 0) every
        other answer goes to a grader.
        """
        prepared = [self._prepare(s) for s in submissions]
        jobs: list[GradeJob] = []
        job_of_item: dict[int, int] = {}
        first_job: dict[CacheKey, int] = {}  # the job that grades a key for the whole batch
        cached: dict[CacheKey, CachedVerdict] = {}
        for index, item in enumerate(prepared):
            key = item.key
            if key is None:
                continue
            if self.cache.enabled:
                if key in first_job or key in cached:
                    continue
                hit = self.cache.get(key)
                if hit is not None:
                    cached[key] = hit
                    continue
                first_job[key] = len(jobs)
            job_of_item[index] = len(jobs)
            jobs.append(GradeJob(answer=key[1], truths=key[0]))
        outcomes = self.pool.run(jobs)
        for key, job in first_job.items():
            self.cache.put(key, CachedVerdict(outcomes[job].status, outcomes[job].message))
        verdicts = []
        for index, item in enumerate(prepared):
            verdict = item.verdict
            if verdict is None:
                assert item.key is not None
                if index in job_of_item:
                    outcome = outcomes[job_of_item[index]]
                    verdict = self._verdict(item, outcome.status, outcome.message, outcome.seconds, False)
                    self.stats.cache_misses += 1
                else:
                    known = cached.get(item.key) or outcomes[first_job[item.key]]
                    verdict = self._verdict(item, known.status, known.message, 0.0, True)
                    self.stats.cache_hits += 1
            self.stats.plain_numbers += int(item.plain_number)
            self.stats.count(verdict)
            verdicts.append(verdict)
        return verdicts

    def _prepare(self, submission: Submission) -> _Prepared:
        """Extraction, the format rule and the plain-number fast path (cheap, in this process); the
        answer's cache key when it still needs a grader."""
        fmt = self.fmt
        extracted = extract_answer(submission.response, fmt)
        formatted = is_formatted(submission.thinking_closed, submission.response, fmt)
        item = _Prepared(extracted, formatted, submission.ended_in_eos)
        try:
            truths = truth_texts(submission.ground_truth)
            if any(not _valid_unicode(text) for text in truths):
                raise GroundTruthError("the ground truth is not valid Unicode (it holds a lone surrogate)")
        except GroundTruthError as error:
            item.verdict = self._verdict(item, Status.ERROR, str(error), 0.0, False)
            return item
        if extracted is None:
            reason = missing_answer_reason(submission.response, fmt)
            item.verdict = self._verdict(item, Status.UNPARSEABLE, reason, 0.0, False)
            return item
        answer = normalise_answer(extracted)
        problem = None
        if not answer:
            problem = "the box is empty"
        elif has_control_characters(extracted):
            problem = "the answer holds a control character (e.g. NUL): it is not a mathematical answer"
        elif not _valid_unicode(answer):
            problem = "the answer is not valid Unicode (it holds a lone surrogate)"
        elif len(answer) > self.max_answer_chars:
            problem = f"the answer has {len(answer)} characters, over the limit of {self.max_answer_chars}"
        if problem is not None:
            item.verdict = self._verdict(item, Status.UNPARSEABLE, problem, 0.0, False)
            return item
        decided = grade_plain_numbers(answer, truths)
        if decided is not None:
            item.verdict = self._verdict(item, decided, None, 0.0, False)
            item.plain_number = True
        else:
            item.key = (truths, answer)
        return item

    @staticmethod
    def _verdict(
        item: _Prepared, status: Status, message: str | None, seconds: float, cached: bool
    ) -> Verdict:
        reward = int(status is Status.CORRECT and item.formatted and not item.ended_in_eos)
        if item.ended_in_eos and message is None:
            message = EOS_MESSAGE
        return Verdict(status, item.formatted, reward, item.extracted, message, seconds, cached)


def _valid_unicode(text: str) -> bool:
    """Decoded model text is valid Unicode; a lone surrogate means the text was corrupted on the way."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def grade(
    response: str,
    ground_truth: GroundTruth,
    thinking_closed: bool = False,
    *,
    ended_in_eos: bool = False,
    timeout_s: float = DEFAULTS["timeout_seconds"].default,
) -> Verdict:
    """Grade one response in a verifier started for this call (one grader process)."""
    with Verifier(timeout_s=timeout_s, workers=1) as verifier:
        return verifier.grade(response, ground_truth, thinking_closed, ended_in_eos=ended_in_eos)


def grade_many(
    submissions: Sequence[Submission],
    *,
    timeout_s: float = DEFAULTS["timeout_seconds"].default,
    workers: int = DEFAULTS["workers"].default,
) -> list[Verdict]:
    """Grade a batch in a verifier started for this call."""
    with Verifier(timeout_s=timeout_s, workers=workers) as verifier:
        return verifier.grade_many(submissions)
