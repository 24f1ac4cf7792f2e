"""Several budgets from one thought on the transformers engine with kept KV, on the tiny models.

The random tiny model (`build_tiny_model`, through `anytime model tiny`) never closes its thought, so every
budget is a cut mid-thought; the warm model closes some, so budgets past the end share one answer.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from anytime.contracts.sampling import SamplingConfig
from anytime.synth import get_task
from services.api.inference.anytime_job import AnytimeJob, FailedEvent, FinishedEvent, JobEvent
from services.api.inference.rounds import RoundBatcher
from services.engines.seam import GenerationRequest
from services.engines.transformers_engine import TransformersEngine

pytestmark = pytest.mark.integration

GREEDY = SamplingConfig(temperature=0.0)
BUDGETS = (16, 40, 64, 96)
ANSWER_TOKENS = 12


def _prompt(engine: TransformersEngine, problem: str) -> tuple[int, ...]:
    tokenizer = engine.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
    )
    return tuple(tokenizer.encode(text, add_special_tokens=False))


def _job(
    engine: TransformersEngine, prompt: tuple[int, ...], budgets: tuple[int, ...], segment: int
) -> FinishedEvent:
    """One inference job through the round batcher, to its end."""
    batcher = RoundBatcher(engine, batch_wait_s=0.0)
    done = threading.Event()
    events: list[JobEvent] = []

    def sink(event: JobEvent) -> None:
        events.append(event)
        if isinstance(event, FinishedEvent | FailedEvent):
            done.set()

    job = AnytimeJob("job", prompt, budgets, ANSWER_TOKENS, GREEDY, segment, engine.facts, sink)
    batcher.submit(job)
    try:
        assert done.wait(120), "the job did not finish"
    finally:
        batcher.close()
    finished = [e for e in events if isinstance(e, FinishedEvent)]
    assert finished, events
    return finished[0]


def _answers(event: FinishedEvent) -> list[tuple[int | None, tuple[int, ...], tuple[int, ...]]]:
    return [(a.budget, a.thinking_ids, a.answer_ids) for a in event.answers]


@pytest.mark.parametrize("model", ["tiny_model_dir", "warm_model_dir"])
def test_several_budgets_give_the_answers_of_one_budget_each_and_of_re_prefilling(
    model: str, request: pytest.FixtureRequest
) -> None:
    """Greedy: the same tokens whether the answers are cut from the kept thought, asked for one budget at a
    time, or prefilled whole from prompt + thought (`kept_kv_tokens=0`, the engine before kept KV)."""
    model_dir: Path = request.getfixturevalue(model)
    kept = TransformersEngine.from_model_dir(model_dir)
    whole = TransformersEngine.from_model_dir(model_dir, kept_kv_tokens=0)
    for problem in get_task("digit-chain").generate(2, seed=4):
        prompt = _prompt(kept, problem.problem)
        several = _answers(_job(kept, prompt, BUDGETS, segment=32))
        assert several == _answers(_job(whole, prompt, BUDGETS, segment=32))
        one_each = [_answers(_job(kept, prompt, (budget,), segment=32))[0] for budget in BUDGETS]
        assert several == one_each
        assert sum(len(answer) for _, _, answer in several) > 10


def test_each_answer_prefills_only_its_own_tokens(tiny_model_dir: Path) -> None:
    """Every token the model is fed, counted: the prompt once, each thought token once (the next segment
    and the cuts reuse the kept KV), and per answer the last thought token, the inserted text, the
    delimiter and its own tokens; no re-prefill of prompt + thought."""
    engine = TransformersEngine.from_model_dir(tiny_model_dir)
    fed: list[int] = []

    def count(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        fed.append(int(kwargs["input_ids"].shape[1]))

    handle = engine.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        prompt = _prompt(engine, get_task("digit-chain").generate(1, seed=0)[0].problem)
        event = _job(engine, prompt, BUDGETS, segment=32)
    finally:
        handle.remove()
    facts = engine.facts
    assert all(a.inserted and len(a.answer_ids) == ANSWER_TOKENS for a in event.answers)  # cuts mid-thought
    per_answer = 1 + len(facts.ellipsis_ids) + len(facts.delimiter_ids) + ANSWER_TOKENS - 1
    assert sum(fed) == len(prompt) + len(event.thinking_ids) - 1 + len(BUDGETS) * per_answer
    assert fed[0] == len(prompt) and max(fed[1:]) == per_answer - ANSWER_TOKENS + 1
    assert len(engine.kept) == 1 and engine.kept.tokens == len(prompt) + len(event.thinking_ids) - 1


@pytest.mark.parametrize("n", [1, 4], ids=["copied", "shared"])
def test_a_prefill_that_mixes_kept_and_new_prompts_equals_whole_prefills(
    tiny_model_dir: Path, n: int
) -> None:
    """One call with prompts that extend a kept sequence, crop it, or share nothing with it: the same tokens,
    log-probs within 1e-5, on the per-row-copy path (n = 1) and on the shared-prefix path (n = 4)."""
    thought = GenerationRequest("thought", tuple(range(3, 43)), 1, 24, (), keep_kv=True)
    results = []
    for kept_kv_tokens in (4096, 0):
        engine = TransformersEngine.from_model_dir(tiny_model_dir, kept_kv_tokens=kept_kv_tokens)
        (sample,) = engine.generate([thought], GREEDY)["thought"]
        assert len(engine.kept) == (1 if kept_kv_tokens else 0)
        prompts = {
            "extends": (*thought.prompt_ids, *sample.ids, 7, 8),
            "crops": (*thought.prompt_ids[:30], 9),
            "new": tuple(range(100, 160)),
        }
        requests = [GenerationRequest(key, prompt, n, 8, ()) for key, prompt in prompts.items()]
        results.append(engine.generate(requests, GREEDY))
    reused, whole = results
    for key, samples in whole.items():
        assert [s.ids for s in reused[key]] == [s.ids for s in samples]
        for ours, theirs in zip(reused[key], samples, strict=True):
            difference = torch.tensor(ours.logprobs) - torch.tensor(theirs.logprobs)
            assert difference.abs().max() <= 1e-5


def test_new_weights_drop_the_kept_kv(tiny_model_dir: Path) -> None:
    engine = TransformersEngine.from_model_dir(tiny_model_dir)
    engine.generate([GenerationRequest("t", tuple(range(3, 13)), 1, 4, (), keep_kv=True)], GREEDY)
    assert len(engine.kept) == 1
    engine.load_weights(tiny_model_dir, policy_version=1)
    assert len(engine.kept) == 0
