"""The latency-model engine: what it writes (stop ids, max_tokens, log-probs), reproducibility independent
of batching, follow-ups, its modelled time (a recording `sleep`, no real sleeping) and the anytime rollout
on it, checked with the rollout invariants. A small tokenizer trained here stands in for the tiny model's."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat
from anytime.synth import TASKS, get_task
from anytime.tinymodel.tokenizer import build_tokenizer
from services.engines.factory import make_engine
from services.engines.latency_engine import LatencyEngine, LatencyModel, Pacer, PrefixCache
from services.engines.seam import GenerationRequest, Sample
from services.rollout.anytime_rollout import rollout
from services.rollout.settings import RolloutSettings
from tests.integration.rollout_checks import check_rollout

FMT = SummaryFormat()
SAMPLED = SamplingConfig()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    corpus = [
        text
        for task in TASKS.values()
        for p in task.generate(40, seed=0)
        for text in (p.problem, f"{p.trace}\n{FMT.think_end}{FMT.delimiter}\\boxed{{{p.answer}}}")
    ]
    whole = tuple(dict.fromkeys(t for task in TASKS.values() for t in task.whole_tokens))
    return build_tokenizer([*corpus, FMT.ellipsis + FMT.delimiter], 320, FMT, whole)


@pytest.fixture(scope="module")
def facts(tokenizer: Any) -> ModelFacts:
    return ModelFacts.from_tokenizer(tokenizer, FMT)


class FakeTime:
    """A clock that advances only when slept: the engine's sleeps are then exactly its modelled time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def engine_of(tokenizer: Any, facts: ModelFacts, **model: Any) -> tuple[LatencyEngine, list[float]]:
    """An engine on a fake clock, and the seconds it slept."""
    time = FakeTime()
    engine = LatencyEngine(tokenizer, facts, LatencyModel(**model), clock=time.clock, sleep=time.sleep)
    return engine, time.slept


def thinking(facts: ModelFacts, key: str, max_tokens: int = 40, n: int = 1) -> GenerationRequest:
    return GenerationRequest(key, (1, 2, 3, 4), n, max_tokens, (facts.think_end_id, facts.eos_id))


def test_thoughts_stop_on_their_stop_ids_or_run_to_max_tokens(tokenizer: Any, facts: ModelFacts) -> None:
    engine, _ = engine_of(tokenizer, facts)
    requests = [thinking(facts, f"t{i}", max_tokens=40, n=4) for i in range(50)]
    results = engine.generate(requests, SAMPLED, seed=3)
    endings: Counter[str] = Counter()
    markers = {facts.think_start_id, facts.think_end_id, facts.eos_id, facts.pad_id}
    for request in requests:
        assert len(results[request.key]) == 4
        for sample in results[request.key]:
            assert 0 < len(sample.ids) <= 40 and len(sample.logprobs) == len(sample.ids)
            assert all(math.isfinite(x) and x <= 0 for x in sample.logprobs)
            assert not markers & set(sample.ids[:-1])  # stop ids and markers only ever last
            if sample.finish == "length":
                assert len(sample.ids) == 40 and sample.ids[-1] not in request.stop_ids
                endings["length"] += 1
            else:
                endings["eos" if sample.ids[-1] == facts.eos_id else "think_end"] += 1
                assert sample.ids[-1] in request.stop_ids
    assert endings["length"] > 0 and endings["eos"] > 0 and endings["think_end"] > endings["eos"], endings
    assert len({len(s.ids) for samples in results.values() for s in samples}) > 20  # lengths vary


def test_summaries_stop_at_eos_and_some_write_a_boxed_answer(tokenizer: Any, facts: ModelFacts) -> None:
    engine, _ = engine_of(tokenizer, facts)
    requests = [GenerationRequest(f"s{i}", (5, 6), 8, 24, (facts.eos_id,)) for i in range(20)]
    samples = [s for batch in engine.generate(requests, SAMPLED).values() for s in batch]
    for sample in samples:
        assert facts.eos_id not in sample.ids[:-1] and facts.think_end_id not in sample.ids
        assert (sample.finish == "stop") == (sample.ids[-1] == facts.eos_id)
    boxed = [s for s in samples if "\\boxed{" in tokenizer.decode(list(s.ids))]
    assert 0 < len(boxed) < len(samples)


def test_an_ordinary_stop_id_is_never_written_before_the_end(tokenizer: Any, facts: ModelFacts) -> None:
    engine, _ = engine_of(tokenizer, facts, length_share=0.5)
    (seven,) = tokenizer.encode("7", add_special_tokens=False)
    requests = [GenerationRequest(f"s{i}", (5, 6), 16, 40, (seven,)) for i in range(10)]
    samples = [s for batch in engine.generate(requests, SAMPLED).values() for s in batch]
    assert all(seven not in s.ids[:-1] for s in samples)
    assert {s.finish for s in samples} == {"stop", "length"}
    assert all((s.finish == "stop") == (s.ids[-1] == seven) for s in samples)


def test_same_seed_same_samples_however_the_requests_are_batched(tokenizer: Any, facts: ModelFacts) -> None:
    requests = [thinking(facts, f"t{i}", n=3) for i in range(6)]
    together = engine_of(tokenizer, facts)[0].generate(requests, SAMPLED, seed=1)
    narrow = engine_of(tokenizer, facts, max_rows=2)[0].generate(requests, SAMPLED, seed=1)
    alone = {}
    for request in requests:
        alone.update(engine_of(tokenizer, facts)[0].generate([request], SAMPLED, seed=1))
    assert together == narrow == alone
    other = engine_of(tokenizer, facts)[0].generate(requests, SAMPLED, seed=2)
    assert other != together
    assert len({s.ids for s in together["t0"]}) == 3  # the samples of one request differ


def test_greedy_samples_depend_on_the_prompt_only(tokenizer: Any, facts: ModelFacts) -> None:
    engine, _ = engine_of(tokenizer, facts)
    greedy = SamplingConfig(temperature=0.0)
    first = engine.generate([thinking(facts, "a", n=3)], greedy, seed=1)["a"]
    again = engine.generate([thinking(facts, "b", n=1)], greedy, seed=9)["b"]
    assert first == [again[0]] * 3


def test_follow_ups_run_once_per_request_when_all_its_samples_are_done(
    tokenizer: Any, facts: ModelFacts
) -> None:
    engine, _ = engine_of(tokenizer, facts, max_rows=3)
    calls: list[str] = []

    def follow_up(request: GenerationRequest, samples: list[Sample]) -> list[GenerationRequest]:
        calls.append(request.key)
        assert len(samples) == request.n
        if request.key.startswith("summary"):
            return []
        prompt = (*request.prompt_ids, *samples[0].ids)
        return [GenerationRequest(f"summary/{request.key}", prompt, 2, 8, (facts.eos_id,))]

    results = engine.generate([thinking(facts, f"t{i}", n=2) for i in range(4)], SAMPLED, follow_up)
    assert sorted(calls) == sorted(results) and len(results) == 8
    assert all(len(results[f"summary/t{i}"]) == 2 for i in range(4))
    with pytest.raises(ValueError, match="duplicate request key"):
        engine.generate([thinking(facts, "t0")], SAMPLED, lambda r, s: [thinking(facts, "t0")])


def test_one_batch_takes_the_decode_steps_of_its_longest_row_not_their_sum(
    tokenizer: Any, facts: ModelFacts
) -> None:
    prompt = tuple(range(10, 42))  # two whole prefix-cache blocks
    same = [GenerationRequest(f"r{i}", prompt, 1, 10, (facts.eos_id,)) for i in range(4)]
    # Every sample runs to max_tokens: 10 decode steps; the prompt is prefilled once, the other three
    # find it cached and recompute one token each.
    engine, slept = engine_of(tokenizer, facts, decode_step_s=0.01, prefill_token_s=0.001, length_share=1.0)
    engine.generate(same, SAMPLED)
    assert len(slept) == 10
    assert sum(slept) == pytest.approx(10 * 0.01 + (32 + 3) * 0.001)
    assert engine.modelled_s == pytest.approx(sum(slept))
    # Two rows at a time: two batches one after the other.
    engine, slept = engine_of(
        tokenizer, facts, decode_step_s=0.01, prefill_token_s=0.001, length_share=1.0, max_rows=2
    )
    engine.generate(same, SAMPLED)
    assert sum(slept) == pytest.approx(20 * 0.01 + (32 + 3) * 0.001)


def test_follow_ups_join_the_running_batch_at_the_next_step(tokenizer: Any, facts: ModelFacts) -> None:
    short = GenerationRequest("short", (7,), 1, 10, (facts.eos_id,))
    long = GenerationRequest("long", (8,), 1, 20, (facts.eos_id,))

    def summary_of_short(request: GenerationRequest, samples: list[Sample]) -> list[GenerationRequest]:
        return [GenerationRequest("summary", (9,), 1, 5, (facts.eos_id,))] if request.key == "short" else []

    engine, slept = engine_of(tokenizer, facts, decode_step_s=0.01, prefill_token_s=0.0, length_share=1.0)
    results = engine.generate([short, long], SAMPLED, summary_of_short)
    assert len(results["summary"][0].ids) == 5
    # The summary decodes in steps 11..15, alongside the long request (20 steps): not after it (25).
    assert len(slept) == 20 and sum(slept) == pytest.approx(0.2)


def test_pacer_counts_the_host_work_between_steps_and_keeps_no_debt() -> None:
    time = FakeTime()
    pacer = Pacer(time.clock, time.sleep)
    pacer.spend(0.01)
    time.now += 0.004  # host work inside the next step
    pacer.spend(0.01)
    time.now += 0.05  # host work longer than a step: that step takes longer, nothing is made up later
    pacer.spend(0.01)
    pacer.spend(0.01)
    assert time.slept == pytest.approx([0.01, 0.006, 0.01])
    assert time.now == pytest.approx(0.01 + 0.01 + 0.05 + 0.01)


def test_prefix_cache_counts_the_tokens_past_the_cached_whole_blocks() -> None:
    cache = PrefixCache(block=16)
    sequence = tuple(range(100))  # a prompt and its thought, as a finished sample leaves them
    assert cache.new_tokens(sequence) == 100
    cache.add(sequence)
    summary_prompt = (*sequence[:40], 500, 501, 502)  # cut at 40, then the inserted and delimiter ids
    assert cache.new_tokens(summary_prompt) == 43 - 32  # two whole blocks cached
    assert cache.new_tokens(sequence[:32]) == 1  # fully cached: the last token is recomputed
    assert cache.new_tokens((1, *sequence)) == 101  # a different first block shares nothing


def test_model_checks_its_values() -> None:
    with pytest.raises(ValueError, match="latencies"):
        LatencyModel(decode_step_s=-1)
    with pytest.raises(ValueError, match="length_share"):
        LatencyModel(length_share=1.5)
    with pytest.raises(ValueError, match="max_rows"):
        LatencyModel(max_rows=0)


def test_anytime_rollout_on_it_keeps_every_invariant(tokenizer: Any, facts: ModelFacts) -> None:
    engine, slept = engine_of(tokenizer, facts)
    config = RolloutConfig(budgets=(16, 32, 48, 64), group_size=4, num_summaries=3, summary_max_tokens=24)
    problems = get_task("digit-chain").generate(8, seed=3)
    trajectories = rollout(engine, problems, config, run_id="r", step=2, seed=1)
    endings = check_rollout(trajectories, problems, config, facts)
    assert endings["think_end"] > 0 and endings["eos"] + endings["length"] > 0, endings
    assert trajectories[0].prompt_ids == prompt_ids(tokenizer, problems[0].problem)
    again = rollout(engine, problems, config, run_id="r", step=2, seed=1)
    assert [t.model_dump_json() for t in again] == [t.model_dump_json() for t in trajectories]
    assert sum(slept) > 0


def test_factory_starts_it_from_a_model_folder_with_the_settings_timings(
    tokenizer: Any, tmp_path: Path
) -> None:
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    settings = RolloutSettings(engine="latency", max_rows=7, latency_decode_step_s=0.5)
    engine = make_engine(settings.engine, tmp_path, settings, policy_version=3)
    assert isinstance(engine, LatencyEngine)
    assert engine.model == LatencyModel(decode_step_s=0.5, prefill_token_s=0.00002, max_rows=7)
    assert engine.policy_version == 3 and engine.facts == ModelFacts.from_tokenizer(tokenizer, FMT)
    engine.load_weights(tmp_path, 4)
    assert engine.policy_version == 4
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        engine.load_weights(tmp_path / "missing", 5)
