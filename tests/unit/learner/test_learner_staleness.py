"""Stale trajectories (the rollout ran ahead of the learner): decoupled PPO on the tiny model (CPU, float32).

On fresh trajectories the update is bit-identical with or without the correction, whatever the staleness
knobs; stale trees, and only those, are weighed by π_prox/π_behav (truncated); when the behaviour policy is
the proximal one the weights are 1 and the update is the fresh one; a stale batch at a temperature other
than 1 is refused before the model is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import services.learner.update as update_module
from anytime.brpo.config import BRPOConfig
from anytime.brpo.logprobs import packed_logprobs
from anytime.brpo.packing import collate_trees
from anytime.contracts.learn import LearnerConfig, OldLogProbs
from anytime.model_facts import ModelFacts
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.summary_format import SummaryFormat
from anytime.trajectory import Trajectory
from services.learner.batch import BatchMismatchError, build_step_batch
from services.learner.learner import Learner
from tests.fixtures.synthetic import StepShape, synthetic_step

BRPO = BRPOConfig(b_max=16, num_budgets=2, num_summaries=2, summary_max_tokens=4, group_size=2)
SHAPE = StepShape(problems=2, group_size=2, budgets=(8, 16), num_summaries=2, summary_tokens=4)
CONFIG = LearnerConfig(brpo=BRPO, lr=1e-3)
BEHAVIOUR_METRICS = {"policy/behaviour_weight_mean", "policy/behaviour_weight_truncated_fraction"}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def facts(tiny_model_dir: Path) -> ModelFacts:
    from transformers import AutoTokenizer

    return ModelFacts.from_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir), SummaryFormat())


def _step_data(facts: ModelFacts, seed: int, step: int = 0, version: int = 0):
    special = {facts.think_end_id, facts.eos_id, facts.pad_id, facts.think_start_id}
    return synthetic_step(
        SHAPE,
        vocab=[i for i in range(10, 300) if i not in special],
        ellipsis_ids=facts.ellipsis_ids,
        delimiter_ids=facts.delimiter_ids,
        think_end_id=facts.think_end_id,
        eos_id=facts.eos_id,
        seed=seed,
        step=step,
        policy_version=version,
    )


def _at_version(version: int, trajectories: list[Trajectory]) -> list[Trajectory]:
    return [t.model_copy(update={"policy_version": version}) for t in trajectories]


def _without_timings(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("perf/")}


def _trained(learner: Learner, steps: list[tuple[Any, Any]]) -> tuple[dict[str, torch.Tensor], list]:
    metrics = [_without_timings(learner.step(*step)) for step in steps]
    return {n: p.detach().clone() for n, p in learner.model.named_parameters()}, metrics


def test_fresh_trajectories_take_the_on_policy_path_bit_for_bit(
    tiny_model_dir: Path, facts, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [_step_data(facts, seed=20 + s, step=s, version=s) for s in range(2)]
    reference, reference_metrics = _trained(Learner.from_model_dir(tiny_model_dir, CONFIG, "cpu"), steps)
    assert all(m["staleness/mean"] == m["staleness/max"] == 0 for m in reference_metrics)
    assert all(not BEHAVIOUR_METRICS & set(m) for m in reference_metrics)

    # The staleness knobs set: fresh data must not notice them.
    knobs = CONFIG.model_copy(update={"max_staleness": 2, "behaviour_weight_cap": 5.0})
    lagged, lagged_metrics = _trained(Learner.from_model_dir(tiny_model_dir, knobs, "cpu"), steps)
    # The correction removed: no weights computed, none passed to the loss.
    real_loss = update_module.ppo_loss

    def unweighted_loss(*args: Any, **kwargs: Any):
        assert kwargs["behaviour_weights"] is None
        return real_loss(*args, **kwargs)

    def no_weights(*args: Any, **kwargs: Any):
        raise AssertionError("behaviour weights computed for fresh trajectories")

    monkeypatch.setattr(update_module, "ppo_loss", unweighted_loss)
    monkeypatch.setattr(update_module, "behaviour_weights", no_weights)
    plain, plain_metrics = _trained(Learner.from_model_dir(tiny_model_dir, CONFIG, "cpu"), steps)
    for other, other_metrics in ((lagged, lagged_metrics), (plain, plain_metrics)):
        assert other_metrics == reference_metrics
        assert all(torch.equal(other[name], value) for name, value in reference.items())


def test_only_stale_trees_are_weighed_and_the_weights_are_reported(
    tiny_model_dir: Path, facts, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIG.model_copy(update={"max_staleness": 2})
    learner = Learner.from_model_dir(tiny_model_dir, config, "cpu")
    learner.step(*_step_data(facts, seed=30, step=0, version=0))
    learner.step(*_step_data(facts, seed=31, step=1, version=1))
    trajectories, verdicts = _step_data(facts, seed=32, step=2)
    # Trace 1 of each problem current, trace 0 two versions behind; the synthetic "engine" log-probs are
    # -1 (far above the random model's: small weights), and -20 for problem p0's thinking (capped weights).
    mixed = [
        t.model_copy(
            update={
                "policy_version": 2 * t.trace_index,
                "thinking_logprobs": [-20.0 if t.problem_id == "p0" else -1.0] * len(t.thinking_ids),
            }
        )
        for t in trajectories
    ]
    masks: list[torch.Tensor] = []
    real = update_module.behaviour_weights

    def recording(proximal, behaviour, mask, cap):
        masks.append(mask.clone())
        return real(proximal, behaviour, mask, cap)

    monkeypatch.setattr(update_module, "behaviour_weights", recording)
    metrics = learner.step(mixed, verdicts)
    batch = build_step_batch(mixed, verdicts, BRPO, BRPO.budget_prior())
    stale_tokens = sum(
        int(tree.trainable.sum())
        for tree, t in zip(batch.trees, batch.trajectories, strict=True)
        if t.policy_version == 0
    )
    assert stale_tokens > 0 and sum(int(mask.sum()) for mask in masks) == stale_tokens
    assert metrics["staleness/mean"] == 1.0 and metrics["staleness/max"] == 2.0
    assert 0 < metrics["policy/behaviour_weight_mean"] <= config.behaviour_weight_cap
    assert 0 < metrics["policy/behaviour_weight_truncated_fraction"] < 1
    assert learner.policy_version == 3 and learner.broken is None


def test_weights_are_one_when_the_behaviour_policy_is_the_proximal_one(
    tiny_model_dir: Path, facts, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIG.model_copy(update={"max_staleness": 1})
    warm = _step_data(facts, seed=40)
    trajectories, verdicts = _step_data(facts, seed=41, step=1, version=1)
    fresh = Learner.from_model_dir(tiny_model_dir, config, "cpu")
    fresh.step(*warm)
    stale = Learner.from_model_dir(tiny_model_dir, config, "cpu")
    stale.step(*warm)
    # The engine recorded exactly the learner's log-probs (as if it had sampled with version 1).
    own: dict[str, torch.Tensor] = {}
    batch = build_step_batch(trajectories, verdicts, BRPO, BRPO.budget_prior())
    for tree, trajectory in zip(batch.trees, batch.trajectories, strict=True):
        with torch.no_grad():
            own[trajectory.id] = packed_logprobs(stale.model, collate_trees([tree], stale.pad_id)).logprobs[0]
    monkeypatch.setattr(update_module, "rollout_logprobs", lambda trajectory, tree: own[trajectory.id])

    expected = fresh.step(trajectories, verdicts)
    metrics = stale.step(_at_version(0, trajectories), verdicts)
    assert metrics["staleness/mean"] == 1.0 and BEHAVIOUR_METRICS.isdisjoint(expected)
    assert metrics["policy/behaviour_weight_mean"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["policy/behaviour_weight_truncated_fraction"] == 0.0
    for (name, p), q in zip(fresh.model.named_parameters(), stale.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=name)


def test_a_stale_batch_is_refused_at_a_tempered_temperature_and_rollout_old_logprobs_take_no_weight(
    tiny_model_dir: Path, facts
) -> None:
    tempered = Learner.from_model_dir(
        tiny_model_dir, CONFIG.model_copy(update={"max_staleness": 1, "temperature": 0.7}), "cpu"
    )
    tempered.policy_version = 1
    trajectories, verdicts = _step_data(facts, seed=50, step=1, version=0)
    with pytest.raises(BatchMismatchError, match=r"untempered.*temperature 0\.7"):
        tempered.step(trajectories, verdicts)
    assert tempered.broken is None and tempered.policy_version == 1
    tempered.step(*_step_data(facts, seed=50, step=1, version=1))  # fresh data trains at any temperature

    config = CONFIG.model_copy(update={"max_staleness": 1, "old_logprobs": OldLogProbs.ROLLOUT})
    rollout = Learner.from_model_dir(tiny_model_dir, config, "cpu")
    rollout.policy_version = 1
    metrics = rollout.step(trajectories, verdicts)
    assert metrics["staleness/max"] == 1.0 and BEHAVIOUR_METRICS.isdisjoint(metrics)


def test_the_cap_is_a_learner_knob_above_one() -> None:
    assert LearnerConfig().behaviour_weight_cap == 2.0
    run = RunConfig(model="m", dataset="d", learner={"behaviour_weight_cap": 3.0})
    assert RunPlan.from_config(run).learner.behaviour_weight_cap == 3.0
    with pytest.raises(ValueError, match="greater than 1"):
        LearnerConfig(behaviour_weight_cap=1.0)
