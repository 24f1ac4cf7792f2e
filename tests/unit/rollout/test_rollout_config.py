"""Rollout configuration, jobs and the engine holder's policy-version rules (pure logic, a fake engine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from anytime.contracts.rollout import RolloutConfig, RolloutJob
from anytime.contracts.sampling import SamplingConfig
from services.engines.seam import GenerationRequest, StalePolicyError
from services.engines.transformers_engine import TransformersEngine
from services.rollout.jobs import EngineHolder
from services.rollout.settings import RolloutSettings


def test_sampling_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        SamplingConfig.model_validate({"temperature": 1.0, "top_q": 0.9})  # a typo is an error
    with pytest.raises(ValidationError, match="greedily"):
        SamplingConfig(temperature=0.0, top_p=0.9)
    with pytest.raises(ValidationError):
        SamplingConfig(top_p=0.0)
    assert SamplingConfig(temperature=0).greedy and not SamplingConfig().greedy


def test_rollout_config_budgets_must_increase() -> None:
    with pytest.raises(ValidationError, match="strictly increasing"):
        RolloutConfig(budgets=(64, 32), group_size=1, num_summaries=1, summary_max_tokens=8)
    with pytest.raises(ValidationError, match="strictly increasing"):
        RolloutConfig(budgets=(), group_size=1, num_summaries=1, summary_max_tokens=8)
    with pytest.raises(ValidationError, match="extra"):
        RolloutConfig.model_validate({"budgets": [8], "groups": 2})
    assert RolloutConfig(budgets=(8, 16), group_size=1, num_summaries=1, summary_max_tokens=8).b_max == 16


def test_generation_request_validates() -> None:
    with pytest.raises(ValueError, match="n and max_tokens"):
        GenerationRequest("k", (1,), 0, 4, ())
    with pytest.raises(ValueError, match="empty prompt"):
        GenerationRequest("k", (), 1, 4, ())


def test_rollout_job_refuses_bad_arguments_with_the_field() -> None:
    good = {
        "run_id": "r",
        "step": 0,
        "policy_version": 0,
        "model_dir": "/m",
        "problems": [{"id": "p", "problem": "x", "answer": "1"}],
        "config": {"budgets": [8, 16], "group_size": 2, "num_summaries": 2, "summary_max_tokens": 8},
    }
    assert RolloutJob.model_validate(good).config.budgets == (8, 16)
    for key, value, where in [
        ("step", -1, "step"),
        ("problems", [], "problems"),
        ("config", {"budgets": [16, 8]}, "config.budgets"),
        ("extra", 1, "extra"),
    ]:
        with pytest.raises(ValidationError, match=where):
            RolloutJob.model_validate({**good, key: value})


class FakeEngine:
    """Records weight loads; the holder's rules are what is under test."""

    def __init__(self, version: int) -> None:
        self._version = version
        self.loads: list[tuple[Path, int]] = []
        self.closed = False

    @property
    def policy_version(self) -> int:
        return self._version

    def load_weights(self, model_dir: Path, policy_version: int) -> None:
        self.loads.append((model_dir, policy_version))
        self._version = policy_version

    def close(self) -> None:
        self.closed = True


def test_engine_holder_moves_forward_and_refuses_older_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Path, int]] = []

    def make(kind: str, model_dir: Path, settings: RolloutSettings, version: int) -> FakeEngine:
        made.append((model_dir, version))
        return FakeEngine(version)

    monkeypatch.setattr("services.rollout.jobs.make_engine", make)
    holder = EngineHolder(RolloutSettings(max_engines=2))
    engine = holder.at_version("a", Path("/ckpt/3"), 3)
    assert made == [(Path("/ckpt/3"), 3)]
    assert holder.at_version("a", Path("/ckpt/3"), 3) is engine and engine.loads == []  # type: ignore[attr-defined]
    holder.at_version("a", Path("/ckpt/5"), 5)
    assert engine.loads == [(Path("/ckpt/5"), 5)]  # type: ignore[attr-defined]
    with pytest.raises(StalePolicyError, match="asked for policy version 4, but version 5 is loaded"):
        holder.at_version("a", Path("/ckpt/4"), 4)
    assert engine.policy_version == 5 and len(made) == 1
    # A pipelined run's job accepts the newer version loaded: no reload, the engine says which it serves.
    assert holder.at_version("a", Path("/ckpt/4"), 4, accept_newer=True) is engine
    assert engine.policy_version == 5 and engine.loads == [(Path("/ckpt/5"), 5)]  # type: ignore[attr-defined]
    # Another run gets its own engine at its own version; a third evicts the least recently used.
    other = holder.at_version("b", Path("/m"), 0)
    assert other is not engine and other.policy_version == 0
    holder.at_version("a", Path("/ckpt/5"), 5)
    holder.at_version("c", Path("/m"), 0)
    assert list(holder.engines) == ["a", "c"] and other.closed  # type: ignore[attr-defined]


def _sample_many(logits: Sequence[float], sampling: SamplingConfig, n: int = 4000) -> torch.Tensor:
    batch = torch.tensor([list(logits)] * n)
    token, logprob = TransformersEngine._sample(batch, sampling, torch.Generator().manual_seed(0))
    raw = torch.log_softmax(batch[0], dim=-1)
    assert torch.allclose(logprob, raw[token])  # log-probs of the unmodified distribution
    return token


def test_sampler_top_k_and_top_p_keep_only_the_likeliest_tokens() -> None:
    logits = [2.0, 1.0, 0.0, -1.0]  # probabilities ≈ 0.644, 0.237, 0.087, 0.032
    assert set(_sample_many(logits, SamplingConfig(top_k=2)).tolist()) == {0, 1}
    # top_p 0.7: token 0 (0.644) is not enough, token 1 brings it to 0.881: keep {0, 1}.
    assert set(_sample_many(logits, SamplingConfig(top_p=0.7)).tolist()) == {0, 1}
    assert set(_sample_many(logits, SamplingConfig(top_p=0.5)).tolist()) == {0}
    assert set(_sample_many(logits, SamplingConfig()).tolist()) == {0, 1, 2, 3}
    assert set(_sample_many(logits, SamplingConfig(temperature=0.0), n=3).tolist()) == {0}
    frequencies = torch.bincount(_sample_many(logits, SamplingConfig()), minlength=4) / 4000
    assert torch.allclose(frequencies, torch.softmax(torch.tensor(logits), 0), atol=0.03)
