"""One inference request as a small state machine over engine requests: anytime answers from one trace.

The thought is sampled in segments that end at every budget (and at least every `segment_tokens`
tokens). When the thought reaches budget `b_j` without having closed, the answer at `b_j` is requested
from `prompt + z[:b_j] + inserted + delimiter` (the training template, `anytime.brpo.cuts`) while the
thought goes on in the next round; when the thought closes (`</think>`, EOS) or reaches the largest
budget, the budgets still open share one cut of the whole thought and one answer. A stop ends the
thought where it is and asks for one more answer from what has been thought so far.

Torch-free: it only builds `GenerationRequest`s and reads `Sample`s. Every method but `request_stop` and
`cancel` runs on the engine's round thread (`services.api.inference.rounds`); events leave through `sink`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from anytime.brpo.cuts import Cut, cut_trace, trace_cuts
from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from services.engines.seam import GenerationRequest, Sample, SampleFinish


@dataclass(frozen=True)
class AnytimeAnswer:
    """The answer at one budget (`index` = budget index), or at a stop (`index` = number of budgets)."""

    index: int
    budget: int | None
    thinking_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    inserted: bool  # the thought was cut (or never closed): the ellipsis was inserted before the answer
    finish: SampleFinish
    stopped: bool = False


@dataclass(frozen=True)
class JobUsage:
    prompt_tokens: int
    thinking_tokens: int
    answer_tokens: int

    @property
    def completion_tokens(self) -> int:
        return self.thinking_tokens + self.answer_tokens


@dataclass(frozen=True)
class AnswerEvent:
    answer: AnytimeAnswer


@dataclass(frozen=True)
class FinishedEvent:
    answers: tuple[AnytimeAnswer, ...]  # in index order
    usage: JobUsage
    thinking_ids: tuple[int, ...]  # the whole thought


@dataclass(frozen=True)
class FailedEvent:
    error: str


JobEvent = AnswerEvent | FinishedEvent | FailedEvent


@dataclass
class _Pending:
    cut: Cut
    indices: tuple[int, ...]  # budget indices served (or the stop index)
    stopped: bool


@dataclass
class AnytimeJob:
    """Think up to `budgets[-1]` tokens, answering at each budget; `budgets` ascending, each ≥ 1."""

    job_id: str
    prompt_ids: tuple[int, ...]
    budgets: tuple[int, ...]
    summary_max_tokens: int
    sampling: SamplingConfig
    segment_tokens: int
    facts: ModelFacts
    sink: Callable[[JobEvent], None]
    thinking: list[int] = field(default_factory=list)
    _next_budget: int = 0
    _thinking_done: bool = False
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _answers: dict[int, AnytimeAnswer] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _finished: bool = False
    _requests: int = 0
    _answer_tokens: int = 0

    def __post_init__(self) -> None:
        if (
            not self.budgets
            or any(b < 1 for b in self.budgets)
            or list(self.budgets) != sorted(set(self.budgets))
        ):
            raise ValueError(f"budgets must be ascending positive integers; got {self.budgets}")

    # -- called from any thread ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """End the thought at the next round and answer from what has been thought so far."""
        self._stop.set()

    def cancel(self) -> None:
        """Drop the job at the next round (the client went away)."""
        self._cancel.set()

    @property
    def stop_index(self) -> int:
        return len(self.budgets)

    # -- round thread -------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    def next_requests(self) -> list[GenerationRequest]:
        """What this job runs in the next round: a thinking segment, or the answer to a stop."""
        if self._finished:
            return []
        if self._cancel.is_set():
            self._finished = True
            return []
        if self._thinking_done:  # only answers in flight: they run within the round that asked for them
            return []
        if self._stop.is_set():
            self._thinking_done = True
            (cut,) = cut_trace(
                len(self.thinking), "length", [max(1, len(self.thinking))], *self._inserted_and_delimiter()
            )
            return [self._answer_request(cut, (self.stop_index,), stopped=True)]
        target = min(self.budgets[self._next_budget], len(self.thinking) + self.segment_tokens)
        return [
            GenerationRequest(
                self._key("think"),
                (*self.prompt_ids, *self.thinking),
                1,
                target - len(self.thinking),
                (self.facts.think_end_id, self.facts.eos_id),
                keep_kv=True,  # the next segment and every answer cut from the thought extend it
            )
        ]

    def on_samples(self, request: GenerationRequest, samples: list[Sample]) -> list[GenerationRequest]:
        """A request of this job finished; returns the answers to run in the same round."""
        pending = self._pending.pop(request.key, None)
        if pending is not None:
            self._record_answer(pending, samples[0])
            return []
        return self._on_thought(samples[0])

    def fail(self, error: str) -> None:
        if not self._finished:
            self._finished = True
            self.sink(FailedEvent(error))

    def _on_thought(self, sample: Sample) -> list[GenerationRequest]:
        self.thinking.extend(sample.ids)
        length = len(self.thinking)
        closed = bool(self.thinking) and self.thinking[-1] in (self.facts.think_end_id, self.facts.eos_id)
        if closed or length >= self.budgets[-1]:
            self._thinking_done = True
            offset = self._next_budget
            cuts = trace_cuts(self.thinking, self.budgets[offset:], self.facts)
            return [
                self._answer_request(cut, tuple(offset + i for i in cut.budget_indices), stopped=False)
                for cut in cuts
            ]
        if length == self.budgets[self._next_budget]:
            # The thought passed b_j without closing: cut it here (the ellipsis closes it), as in training.
            (cut,) = cut_trace(length, "length", [length], *self._inserted_and_delimiter())
            index = self._next_budget
            self._next_budget += 1
            return [self._answer_request(cut, (index,), stopped=False)]
        return []

    def _inserted_and_delimiter(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.facts.ellipsis_ids, self.facts.delimiter_ids

    def _answer_request(self, cut: Cut, indices: tuple[int, ...], stopped: bool) -> GenerationRequest:
        key = self._key("answer")
        self._pending[key] = _Pending(cut, indices, stopped)
        return GenerationRequest(
            key,
            tuple(cut.summary_prompt(self.prompt_ids, self.thinking)),
            1,
            self.summary_max_tokens,
            (self.facts.eos_id,),
        )

    def _record_answer(self, pending: _Pending, sample: Sample) -> None:
        # Collapsed budgets (past the end of a closed thought) share one prompt, so they share one answer.
        self._answer_tokens += len(sample.ids)
        for index in pending.indices:
            stopped = pending.stopped
            answer = AnytimeAnswer(
                index=index,
                budget=None if stopped else self.budgets[index],
                thinking_ids=tuple(self.thinking[: pending.cut.cut]),
                answer_ids=sample.ids,
                inserted=bool(pending.cut.inserted_ids),
                finish=sample.finish,
                stopped=stopped,
            )
            self._answers[index] = answer
            self.sink(AnswerEvent(answer))
        if self._thinking_done and not self._pending:
            self._finished = True
            answers = tuple(self._answers[i] for i in sorted(self._answers))
            usage = JobUsage(
                prompt_tokens=len(self.prompt_ids),
                thinking_tokens=len(self.thinking),
                answer_tokens=self._answer_tokens,
            )
            self.sink(FinishedEvent(answers, usage, tuple(self.thinking)))

    def _key(self, kind: str) -> str:
        self._requests += 1
        return f"{self.job_id}/{kind}/{self._requests}"
