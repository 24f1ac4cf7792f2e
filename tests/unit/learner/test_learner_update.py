"""The learner's update on the tiny model (CPU, float32, deterministic).

One update raises the log-probs of positive-advantage tokens and lowers the negative ones; zero advantages
leave the weights exactly as they were; a run resumed after a crash (from the newest intact checkpoint,
a corrupted newer one skipped) ends with the same weights and optimizer state as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from anytime.brpo.config import BRPOConfig
from anytime.brpo.logprobs import packed_logprobs
from anytime.brpo.packing import collate_trees
from anytime.contracts.learn import LearnerConfig, OldLogProbs
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from services.learner.batch import BatchMismatchError, build_step_batch
from services.learner.checkpoint import CheckpointStore
from services.learner.learner import Learner, LearnerBrokenError
from tests.fixtures.synthetic import StepShape, synthetic_step

BRPO = BRPOConfig(b_max=16, num_budgets=2, num_summaries=2, summary_max_tokens=4, group_size=2)
SHAPE = StepShape(problems=2, group_size=2, budgets=(8, 16), num_summaries=2, summary_tokens=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Many tiny forwards: one thread avoids oversubscription on a small, busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def facts(tiny_model_dir: Path) -> ModelFacts:
    from transformers import AutoTokenizer

    return ModelFacts.from_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir), SummaryFormat())


def _step_data(facts: ModelFacts, seed: int, step: int = 0, version: int = 0, reward_rate: float = 0.5):
    special = {facts.think_end_id, facts.eos_id, facts.pad_id, facts.think_start_id}
    vocab = [i for i in range(10, 300) if i not in special]
    return synthetic_step(
        SHAPE,
        vocab=vocab,
        ellipsis_ids=facts.ellipsis_ids,
        delimiter_ids=facts.delimiter_ids,
        think_end_id=facts.think_end_id,
        eos_id=facts.eos_id,
        seed=seed,
        step=step,
        policy_version=version,
        reward_rate=reward_rate,
    )


def _parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_one_update_moves_log_probs_with_the_sign_of_the_advantage(tiny_model_dir: Path, facts) -> None:
    config = LearnerConfig(brpo=BRPO, lr=1e-4, mini_batches=1)
    learner = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
    trajectories, verdicts = _step_data(facts, seed=0)
    batch = build_step_batch(trajectories, verdicts, BRPO, BRPO.budget_prior())
    packed = collate_trees(batch.trees, facts.pad_id)
    with torch.no_grad():
        before = packed_logprobs(learner.model, packed).logprobs
    metrics = learner.step(trajectories, verdicts)
    with torch.no_grad():
        after = packed_logprobs(learner.model, packed).logprobs
    delta = after - before
    positive = packed.trainable & (packed.advantages > 0)
    negative = packed.trainable & (packed.advantages < 0)
    assert positive.sum() >= 10 and negative.sum() >= 10
    assert delta[positive].mean() > 0 > delta[negative].mean()
    assert (delta[positive] > 0).float().mean() > 0.8 and (delta[negative] < 0).float().mean() > 0.8
    # One mini-batch whose old log-probs were recomputed by this very model: every ratio is exactly 1.
    assert metrics["policy/ratio_mean"] == pytest.approx(1.0) and metrics["policy/clip_fraction"] == 0
    assert metrics["optim/steps"] == 1 and learner.policy_version == 1
    assert metrics["loss/policy"] < 0 and metrics["optim/grad_norm"] > 0 and metrics["optim/lr"] == 1e-4


def test_zero_advantages_are_stepped_as_the_authors_do(tiny_model_dir: Path, facts) -> None:
    config = LearnerConfig(brpo=BRPO, lr=1e-2)  # weight decay 0.01: it acts even without signal
    learner = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
    before = _parameters(learner.model)
    trajectories, verdicts = _step_data(facts, seed=1, reward_rate=1.0)  # every summary right
    metrics = learner.step(trajectories, verdicts)
    assert metrics["advantage/nonzero_token_share"] == 0
    assert metrics["optim/steps"] == 2 and metrics["optim/zero_signal_steps"] == 2
    assert metrics["optim/skipped_steps"] == 0 and metrics["optim/grad_norm"] == 0
    # Decoupled weight decay shrank every decayed weight by lr · wd per step: (1 - 1e-4)².
    name, weight = next((n, p) for n, p in learner.model.named_parameters() if p.ndim == 2)
    assert torch.allclose(weight, before[name] * (1 - 1e-2 * 0.01) ** 2, atol=1e-7)


def test_zero_advantages_leave_the_weights_unchanged_when_told_to_skip(tiny_model_dir: Path, facts) -> None:
    config = LearnerConfig(brpo=BRPO, lr=1e-2, step_without_signal=False)
    learner = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
    before = _parameters(learner.model)
    trajectories, verdicts = _step_data(facts, seed=1, reward_rate=1.0)  # every summary right
    metrics = learner.step(trajectories, verdicts)
    assert metrics["advantage/nonzero_token_share"] == 0
    assert metrics["optim/steps"] == 0 and metrics["optim/skipped_steps"] == 2
    assert metrics["optim/zero_signal_steps"] == 0
    assert metrics["optim/grad_norm"] == 0 and metrics["loss/policy"] == 0
    assert all(torch.equal(before[name], p) for name, p in learner.model.named_parameters())
    assert learner.policy_version == 1  # the step was consumed all the same


def test_resume_after_a_crash_matches_an_uninterrupted_run(
    tiny_model_dir: Path, facts, tmp_path: Path
) -> None:
    config = LearnerConfig(brpo=BRPO, lr=1e-3)
    steps = [_step_data(facts, seed=10 + s, step=s, version=s) for s in range(3)]

    straight = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
    for s, (trajectories, verdicts) in enumerate(steps):
        straight.step(trajectories, verdicts)
        straight.save(CheckpointStore(tmp_path / "straight"), run_id="r", step=s)

    store = CheckpointStore(tmp_path / "crashed")
    crashed = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
    for s in range(2):
        crashed.step(*steps[s])
        crashed.save(store, run_id="r", step=s)
    crashed.step(*steps[2])  # killed before its checkpoint was written
    del crashed
    # And the newest checkpoint was damaged on disk: the resume must notice and go back one more version.
    weights = store.path_of(2) / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))

    latest = store.latest()  # the newest intact checkpoint
    assert latest is not None
    resumed = Learner.from_checkpoint(latest, config, device="cpu")
    assert resumed.policy_version == 1  # the next step to train is step 1
    for s in (1, 2):
        resumed.step(*steps[s])
        resumed.save(store, run_id="r", step=s)
    assert resumed.policy_version == straight.policy_version == 3
    for (name, expected), actual in zip(
        straight.model.named_parameters(), resumed.model.parameters(), strict=True
    ):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6, msg=name)
    states = zip(straight.optimizer.state.values(), resumed.optimizer.state.values(), strict=True)
    for expected, actual in states:
        torch.testing.assert_close(actual["exp_avg_sq"], expected["exp_avg_sq"], rtol=1e-5, atol=1e-12)
        assert float(actual["step"]) == float(expected["step"]) == 6
    assert store.problem(3) is None and store.problem(2) is None  # version 2 rewritten intact


def test_micro_batching_and_checkpointing_do_not_change_the_update(tiny_model_dir: Path, facts) -> None:
    trajectories, verdicts = _step_data(facts, seed=2)
    results = []
    for tokens, checkpointing in ((100_000, False), (1, True)):  # all trees in one forward / one per forward
        config = LearnerConfig(
            brpo=BRPO, lr=1e-5, micro_batch_tokens=tokens, gradient_checkpointing=checkpointing
        )
        learner = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
        results.append(learner.step(trajectories, verdicts))
    whole, split = results
    assert split["batch/micro_batches"] == 4 and whole["batch/micro_batches"] == 2
    for key in (
        "loss/policy",
        "optim/grad_norm",
        "optim/grad_norm_max",
        "policy/entropy",
        "policy/approx_kl",
    ):
        assert split[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-9), key


def test_token_mean_rollout_logprobs_and_bf16_paths_run(tiny_model_dir: Path, facts) -> None:
    trajectories, verdicts = _step_data(facts, seed=3)
    brpo = BRPO.model_copy(update={"aggregation": "token_mean"})
    config = LearnerConfig(brpo=brpo, lr=1e-4, old_logprobs=OldLogProbs.ROLLOUT, precision="bf16")
    metrics = Learner.from_model_dir(tiny_model_dir, config, device="cpu").step(trajectories, verdicts)
    # The synthetic "rollout" log-probs are all -1, far from the model's: the ratios are clipped.
    assert metrics["policy/clip_fraction"] > 0.1 and metrics["policy/approx_kl"] > 0.1
    assert metrics["optim/steps"] == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_version_mismatch_is_refused_and_a_failed_update_breaks_the_learner(
    tiny_model_dir: Path, facts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = Learner.from_model_dir(tiny_model_dir, LearnerConfig(brpo=BRPO), device="cpu")
    with pytest.raises(BatchMismatchError, match=r"policy versions \[1\].*holds version 0"):
        learner.step(*_step_data(facts, seed=4, version=1))
    assert learner.broken is None

    calls = {"n": 0}
    import services.learner.update as update_module

    real = update_module.ppo_loss

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first mini-batch's optimizer step
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(update_module, "ppo_loss", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        learner.step(*_step_data(facts, seed=4))
    with pytest.raises(LearnerBrokenError):
        learner.step(*_step_data(facts, seed=4))
    with pytest.raises(LearnerBrokenError):
        learner.save(CheckpointStore(tmp_path), run_id="r", step=0)


def test_a_bf16_checkpoint_serves_bf16_and_resumes_with_exact_master_weights(
    tiny_model_dir: Path, facts, tmp_path: Path
) -> None:
    config = LearnerConfig(brpo=BRPO, lr=1e-3, save_dtype="bfloat16")
    learner = Learner.from_model_dir(tiny_model_dir, config, device="cpu")
    learner.step(*_step_data(facts, seed=6))
    store = CheckpointStore(tmp_path)
    checkpoint = learner.save(store, run_id="r", step=0)
    served = AutoModelForCausalLM.from_pretrained(checkpoint.model_dir)
    assert next(served.parameters()).dtype == torch.bfloat16  # what vLLM loads with dtype "auto"
    resumed = Learner.from_checkpoint(checkpoint, config, device="cpu")
    for (name, p), q in zip(learner.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert q.dtype == torch.float32 and torch.equal(p, q), name
    assert resumed.serve_dtype == torch.bfloat16
    # A changed learning rate in the run's config wins over the one stored with the optimizer state.
    faster = Learner.from_checkpoint(checkpoint, config.model_copy(update={"lr": 5e-3}), device="cpu")
    assert faster.optimizer.param_groups[0]["lr"] == 5e-3 and faster.scheduler.base_lrs == [5e-3]


def test_a_checkpoint_is_a_plain_hugging_face_folder(tiny_model_dir: Path, facts, tmp_path: Path) -> None:
    learner = Learner.from_model_dir(tiny_model_dir, LearnerConfig(brpo=BRPO, lr=1e-3), device="cpu")
    metrics = learner.step(*_step_data(facts, seed=5))
    checkpoint = learner.save(CheckpointStore(tmp_path), run_id="r", step=0, metrics=metrics)
    assert checkpoint.metrics == metrics
    assert "attn_implementation" not in (checkpoint.model_dir / "config.json").read_text()
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint.model_dir, dtype=torch.float32)
    for (name, p), q in zip(learner.model.named_parameters(), reloaded.parameters(), strict=True):
        assert torch.equal(p, q), name
