"""Calibrated efforts and what clients read, through the `openai` client on the scripted engine (no model):
`GET /v1/models/{id}` shows each effort's budget with the accuracies it came from (the evaluation of the
promoted checkpoint's policy version), requests with `reasoning_effort` or `min_accuracy` think to it,
`usage` carries `reasoning_tokens` and the budget on every response and the last stream chunk, and an
answer the model ended at once still has `content`.

The scripted thought is 20 tokens then `</think>` (`ScriptedEngine`), so a budget b ≤ 21 thinks b tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from anytime.db import repository
from anytime.db.session import session_scope
from anytime.run_config import RunConfig
from services.api.inference.engines import ServedModel
from services.api.inference.rounds import RoundBatcher
from services.engines.seam import GenerationRequest, Sample
from tests.unit.api.test_api_routes import AUTH, CONFIG, migrated_db
from tests.unit.api.test_inference_api import (
    DEFAULT_BUDGET,
    ScriptedTokenizer,
    Served,
    ServedEngine,
    chat,
    served,
)
from tests.unit.api.test_inference_job import FACTS

__all__ = ["migrated_db", "served"]  # fixtures this module uses

EVAL_BUDGETS = [2, 4, 8, 16]
# best 0.8 at 16; low needs 0.72 (0.75 at 4), medium 0.776 (16: 0.7 at 8 is below), high 16.
EVAL_ACCURACY = [0.25, 0.75, 0.7, 0.8]


def _promoted_run(served: Served, tmp_path: Path, evaluations: dict[int, list[float]], version: int) -> str:
    """A run with checkpoints of policy versions 1 and 2 (folders on disk), evaluations {version: accuracy
    at EVAL_BUDGETS}, and the checkpoint of `version` promoted."""
    with session_scope(served.sessions) as session:
        run = repository.create_run(session, RunConfig.model_validate(CONFIG))
        checkpoints = {}
        for v in (1, 2):
            folder = tmp_path / run.id / f"v{v}"
            folder.mkdir(parents=True)
            checkpoints[v] = repository.record_checkpoint(session, run.id, v, v - 1, str(folder))
        for v, accuracy in evaluations.items():
            sampled = repository.SampledEvaluation(
                num_problems=4,
                num_samples=1,
                temperature=0.0,
                seed=0,
                accuracy_ci_low=[max(0.0, a - 0.2) for a in accuracy],
                accuracy_ci_high=[min(1.0, a + 0.2) for a in accuracy],
                anytime_score_ci_low=0.0,
                anytime_score_ci_high=1.0,
            )
            score = sum(accuracy) / len(accuracy)
            repository.record_evaluation(session, run.id, v, v - 1, EVAL_BUDGETS, accuracy, score, sampled)
        repository.promote_checkpoint(session, run.id, checkpoints[version].id)
        return run.id


def test_the_card_shows_the_mapping_from_the_promoted_policys_evaluation(
    served: Served, tmp_path: Path
) -> None:
    # Policy 1's curve would map everything to 2; the promoted checkpoint is policy 2's.
    run_id = _promoted_run(served, tmp_path, {1: [0.9, 0.1, 0.1, 0.1], 2: EVAL_ACCURACY}, version=2)
    card = served.client.models.retrieve(f"run:{run_id}")
    efforts = (card.model_extra or {})["reasoning_effort"]
    assert efforts["source"] == "evaluation" and efforts["policy_version"] == 2
    assert efforts["best_accuracy"] == 0.8 and efforts["tolerances"] == {
        "low": 0.1,
        "medium": 0.03,
        "high": 0.0,
    }
    assert {e: efforts[e]["budget"] for e in ("low", "medium", "high")} == {
        "low": 4,
        "medium": 16,
        "high": 16,
    }
    assert efforts["low"]["accuracy"] == 0.75 and efforts["low"]["threshold"] == pytest.approx(0.72)
    assert efforts["low"]["accuracy_ci"] == [0.55, 0.95]
    curve = [(p["budget"], p["accuracy"]) for p in efforts["curve"]]
    assert curve == list(zip(EVAL_BUDGETS, EVAL_ACCURACY, strict=True))
    listed = {m.id: m for m in served.client.models.list()}
    assert listed[f"run:{run_id}"].model_extra["reasoning_effort"] == efforts  # type: ignore[index]


@pytest.mark.parametrize(("effort", "budget"), [("low", 4), ("medium", 16), ("high", 16)])
def test_reasoning_effort_thinks_to_the_calibrated_budget(
    served: Served, tmp_path: Path, effort: str, budget: int
) -> None:
    run_id = _promoted_run(served, tmp_path, {2: EVAL_ACCURACY}, version=2)
    response = chat(served, model=f"run:{run_id}", reasoning_effort=effort)
    (choice,) = response.choices
    assert choice.model_extra["budget"] == budget and choice.model_extra["thinking_tokens"] == budget  # type: ignore[index]
    assert response.usage.model_extra["budget"] == budget  # type: ignore[union-attr]


@pytest.mark.parametrize(("accuracy", "budget"), [(0.2, 2), (0.7, 4), (0.76, 16), (0.8, 16)])
def test_min_accuracy_thinks_to_the_smallest_budget_reaching_it(
    served: Served, tmp_path: Path, accuracy: float, budget: int
) -> None:
    run_id = _promoted_run(served, tmp_path, {2: EVAL_ACCURACY}, version=2)
    (choice,) = chat(served, model=f"run:{run_id}", min_accuracy=accuracy).choices
    assert choice.model_extra["budget"] == budget  # type: ignore[index]


def test_an_unreachable_accuracy_is_422_with_the_best_reachable(served: Served, tmp_path: Path) -> None:
    run_id = _promoted_run(served, tmp_path, {2: EVAL_ACCURACY}, version=2)
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, model=f"run:{run_id}", min_accuracy=0.9)
    assert "no evaluated budget reaches accuracy 0.9" in str(error.value)
    assert "at best 0.8 (at budget 16)" in str(error.value) and error.value.param == "min_accuracy"


def test_a_model_without_an_evaluation_keeps_the_default_and_says_so(served: Served, tmp_path: Path) -> None:
    run_id = _promoted_run(served, tmp_path, {1: EVAL_ACCURACY}, version=2)  # policy 2 is not evaluated
    efforts = served.client.models.retrieve(f"run:{run_id}").model_extra["reasoning_effort"]  # type: ignore[index]
    assert efforts["source"] == "default" and efforts["curve"] == [] and efforts["policy_version"] is None
    assert "policy version 2 has no evaluation yet" in efforts["note"]
    assert [efforts[e]["budget"] for e in ("low", "medium", "high")] == [2, 8, 32]  # ¼, 1, 4 × 8
    (choice,) = chat(served, model=f"run:{run_id}", reasoning_effort="low").choices
    assert choice.model_extra["budget"] == 2  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError, match="needs the model's evaluation curve"):
        chat(served, model=f"run:{run_id}", min_accuracy=0.5)
    configured = served.client.models.retrieve("anytime").model_extra["reasoning_effort"]  # type: ignore[index]
    assert configured["source"] == "default" and "has no evaluation" in configured["note"]


def test_promotion_answers_with_the_mapping(served: Served, tmp_path: Path) -> None:
    run_id = _promoted_run(served, tmp_path, {1: [0.0, 0.0, 0.0, 0.0], 2: EVAL_ACCURACY}, version=2)
    with session_scope(served.sessions) as session:
        first = repository.list_checkpoints(session, run_id)[0].id
    promoted = served.http.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": first}, headers=AUTH)
    assert promoted.status_code == 200, promoted.text
    efforts = promoted.json()["reasoning_effort"]
    assert efforts["source"] == "default" and "accuracy 0 at every budget" in efforts["note"]
    best = served.http.post(f"/v1/runs/{run_id}/promote", headers=AUTH).json()  # the best score: policy 2
    assert best["checkpoint"]["policy_version"] == 2 and best["reasoning_effort"]["low"]["budget"] == 4


def test_usage_has_reasoning_tokens_and_the_budget_on_every_response(served: Served) -> None:
    response = chat(served, budgets=[4, 8])
    usage = response.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 8 and usage.model_extra["budget"] == 8  # type: ignore[index]
    (default,) = chat(served).choices
    assert default.model_extra["budget"] == DEFAULT_BUDGET  # type: ignore[index]
    completion = served.client.completions.create(model="anytime", prompt="1 + 1?", extra_body={"budget": 4})
    assert completion.usage is not None and completion.usage.model_extra["budget"] == 4  # type: ignore[index]
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4  # type: ignore[union-attr]


def test_the_last_stream_chunk_carries_usage_without_being_asked(served: Served) -> None:
    chunks = list(
        served.client.chat.completions.create(
            model="anytime",
            messages=[{"role": "user", "content": "1 + 1?"}],
            stream=True,
            extra_body={"budgets": [4, 8]},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens_details.reasoning_tokens == 8  # type: ignore[union-attr]
    assert last.usage.model_extra["budget"] == 8  # type: ignore[index]
    assert all(c.usage is None for c in chunks[:-1])


class SpecialSkippingTokenizer(ScriptedTokenizer):
    """Decodes as `ScriptedTokenizer`, leaving out the marker ids when asked to skip special tokens."""

    def decode(self, ids: list[int], **kwargs: Any) -> str:
        special = {FACTS.think_start_id, FACTS.think_end_id, FACTS.eos_id}
        kept = [i for i in ids if not (kwargs.get("skip_special_tokens") and i in special)]
        return super().decode(kept)


class SilentAnswerEngine(ServedEngine):
    """Thinks as `ScriptedEngine`, and ends every answer at once (EOS first)."""

    def _sample(self, request: GenerationRequest) -> Sample:
        sample = super()._sample(request)
        if FACTS.think_end_id in request.stop_ids:
            return sample
        return Sample((FACTS.eos_id,), (0.0,), "stop")


def test_an_answer_the_model_ended_at_once_is_the_forced_text(served: Served) -> None:
    engine = SilentAnswerEngine(thought_len=20, tokenizer=SpecialSkippingTokenizer())
    inference = served.http.app.state.inference  # type: ignore[attr-defined]
    inference.close()
    inference.loader = lambda path, _s: ServedModel(
        path, engine, RoundBatcher(engine, 0), context_length=4096
    )
    forced = " ".join(str(i) for i in FACTS.delimiter_ids)  # the delimiter, as this tokenizer writes it
    for budget in (4, 100):  # the thought cut at its budget, and a thought that closed by itself
        (choice,) = chat(served, budget=budget).choices
        assert choice.message.content == forced and choice.model_extra["answer_empty"] is True  # type: ignore[index]
    streamed = [c for chunk in chat_stream(served, budgets=[4, 8]) for c in chunk.choices]
    assert [c.delta.content for c in streamed] == [forced, forced]
    completion = served.client.completions.create(model="anytime", prompt="q", extra_body={"budget": 4})
    assert completion.choices[0].text == forced


def chat_stream(served: Served, **extra: Any) -> Any:
    return served.client.chat.completions.create(
        model="anytime", messages=[{"role": "user", "content": "1 + 1?"}], stream=True, extra_body=extra
    )
