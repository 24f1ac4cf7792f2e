"""The anytime inference job and the round batcher on a scripted fake engine (no model, no torch)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from services.api.inference.anytime_job import (
    AnswerEvent,
    AnytimeJob,
    FailedEvent,
    FinishedEvent,
    JobEvent,
)
from services.api.inference.rounds import JobDispatch, RoundBatcher
from services.engines.seam import FollowUp, GenerationRequest, Sample

FACTS = ModelFacts(
    think_start_id=1, think_end_id=2, eos_id=3, pad_id=0, ellipsis_ids=(4, 5), delimiter_ids=(6,)
)
PROMPT = (50, 51, 52)
GREEDY = SamplingConfig(temperature=0)


@dataclass
class ScriptedEngine:
    """Thinks `thought` (then `</think>` when `closes`), answers `[100 + thinking seen, EOS]`."""

    thought_len: int
    closes: bool = True
    facts: ModelFacts = FACTS
    tokenizer: object = None
    calls: list[list[GenerationRequest]] = field(default_factory=list)  # each call's first requests
    seen: list[GenerationRequest] = field(default_factory=list)  # every request, follow-ups included
    policy_version: int = 0

    def thought(self) -> list[int]:
        return [10 + i for i in range(self.thought_len)] + ([FACTS.think_end_id] if self.closes else [])

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingConfig,
        follow_up: FollowUp | None = None,
        seed: int = 0,
    ) -> dict[str, list[Sample]]:
        self.calls.append(list(requests))
        results: dict[str, list[Sample]] = {}
        pending = list(requests)
        while pending:
            wave, pending = pending, []
            for request in wave:
                sample = self._sample(request)
                results[request.key] = [sample]
                if follow_up is not None:
                    pending.extend(follow_up(request, [sample]))
        return results

    def _sample(self, request: GenerationRequest) -> Sample:
        self.seen.append(request)
        if FACTS.think_end_id in request.stop_ids:
            done = len(request.prompt_ids) - len(PROMPT)
            ids = tuple(self.thought()[done : done + request.max_tokens])
            finish = "stop" if ids and ids[-1] == FACTS.think_end_id else "length"
        else:
            seen = len(request.prompt_ids) - len(PROMPT)
            ids, finish = (100 + seen, FACTS.eos_id), "stop"
        return Sample(ids, tuple(0.0 for _ in ids), finish)  # type: ignore[arg-type]


def _job(budgets: tuple[int, ...], events: list[JobEvent], segment: int = 1000) -> AnytimeJob:
    return AnytimeJob(
        job_id="j",
        prompt_ids=PROMPT,
        budgets=budgets,
        summary_max_tokens=8,
        sampling=GREEDY,
        segment_tokens=segment,
        facts=FACTS,
        sink=events.append,
    )


def _drive(engine: ScriptedEngine, *jobs: AnytimeJob) -> int:
    """Rounds as the batcher runs them, on this thread; the number of rounds."""
    rounds = 0
    while not all(job.finished for job in jobs):
        rounds += 1
        members = [(job, job.next_requests()) for job in jobs]
        engine.generate([r for _, rs in members for r in rs], GREEDY, JobDispatch(members))
    return rounds


def _answers(events: list[JobEvent]) -> list[AnswerEvent]:
    return [e for e in events if isinstance(e, AnswerEvent)]


def test_answers_at_each_budget_from_one_thought() -> None:
    engine, events = ScriptedEngine(thought_len=20), []
    job = _job((4, 8, 100), events)
    _drive(engine, job)
    answers = [e.answer for e in _answers(events)]
    assert [a.budget for a in answers] == [4, 8, 100]
    assert [len(a.thinking_ids) for a in answers] == [4, 8, 21]  # the whole thought closes at 21
    assert [a.inserted for a in answers] == [True, True, False]
    assert [a.answer_ids[0] for a in answers] == [100 + 4 + 3, 100 + 8 + 3, 100 + 21 + 1]
    finished = events[-1]
    assert isinstance(finished, FinishedEvent)
    assert finished.usage.thinking_tokens == 21 and finished.usage.answer_tokens == 6


def test_answer_prompts_use_the_training_template() -> None:
    engine, events = ScriptedEngine(thought_len=20), []
    _drive(engine, _job((4,), events))
    answer_requests = [r for r in engine.seen if FACTS.think_end_id not in r.stop_ids]
    (request,) = answer_requests
    assert request.prompt_ids == (*PROMPT, 10, 11, 12, 13, *FACTS.ellipsis_ids, *FACTS.delimiter_ids)
    assert request.stop_ids == (FACTS.eos_id,)


def test_segments_end_at_every_budget_and_at_most_segment_tokens_apart() -> None:
    engine, events = ScriptedEngine(thought_len=30, closes=False), []
    _drive(engine, _job((5, 12), events, segment=4))
    thinking = [r for call in engine.calls for r in call if FACTS.think_end_id in r.stop_ids]
    ends = [len(r.prompt_ids) - len(PROMPT) + r.max_tokens for r in thinking]
    assert ends == [4, 5, 9, 12]
    answers = [e.answer for e in _answers(events)]
    assert [len(a.thinking_ids) for a in answers] == [5, 12] and all(a.inserted for a in answers)


def test_budgets_past_a_closed_thought_share_one_answer() -> None:
    engine, events = ScriptedEngine(thought_len=3), []
    _drive(engine, _job((8, 16, 32), events))
    answers = [e.answer for e in _answers(events)]
    assert [a.index for a in answers] == [0, 1, 2]
    assert len({a.answer_ids for a in answers}) == 1 and not any(a.inserted for a in answers)
    finished = events[-1]
    assert isinstance(finished, FinishedEvent) and finished.usage.answer_tokens == 2  # sampled once


def test_a_stop_answers_from_what_has_been_thought() -> None:
    engine, events = ScriptedEngine(thought_len=100, closes=False), []
    job = _job((50,), events, segment=4)
    requests = job.next_requests()
    engine.generate(requests, GREEDY, job.on_samples)
    job.request_stop()
    _drive(engine, job)
    (answer,) = [e.answer for e in _answers(events)]
    assert answer.stopped and answer.budget is None and answer.index == 1
    assert len(answer.thinking_ids) == 4 and answer.inserted


def test_a_cancelled_job_asks_for_nothing_more() -> None:
    events: list[JobEvent] = []
    job = _job((50,), events)
    job.cancel()
    assert job.next_requests() == [] and job.finished and events == []


@pytest.mark.parametrize("budgets", [(), (0, 4), (8, 4), (4, 4)])
def test_budgets_must_be_ascending_and_positive(budgets: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        _job(budgets, [])


def test_the_batcher_runs_concurrent_jobs_in_the_same_generate_calls() -> None:
    engine = ScriptedEngine(thought_len=10)
    batcher = RoundBatcher(engine, batch_wait_s=0.05)  # type: ignore[arg-type]
    done = threading.Event()
    finished: list[JobEvent] = []

    def sink(event: JobEvent) -> None:
        if isinstance(event, FinishedEvent | FailedEvent):
            finished.append(event)
            if len(finished) == 2:
                done.set()

    jobs = [AnytimeJob(f"j{i}", PROMPT, (4, 8), 8, GREEDY, 1000, FACTS, sink) for i in range(2)]
    for job in jobs:
        batcher.submit(job)
    assert done.wait(5)
    batcher.close()
    assert len(finished) == 2 and all(isinstance(e, FinishedEvent) for e in finished)
    assert len(engine.calls) == 2  # a round to 4, one to 8 (the largest budget): both jobs in each
    assert all(len(call) == 2 for call in engine.calls)


def test_a_failing_engine_fails_the_round_not_the_batcher() -> None:
    class Broken(ScriptedEngine):
        def generate(self, *args: object, **kwargs: object) -> dict[str, list[Sample]]:
            raise RuntimeError("out of memory")

    events: list[JobEvent] = []
    got = threading.Event()
    batcher = RoundBatcher(Broken(thought_len=3), batch_wait_s=0)  # type: ignore[arg-type]
    batcher.submit(
        AnytimeJob("j", PROMPT, (4,), 8, GREEDY, 1000, FACTS, lambda e: (events.append(e), got.set()))
    )
    assert got.wait(5)
    batcher.close()
    assert isinstance(events[0], FailedEvent) and "out of memory" in events[0].error
