"""Anytime rollout on the transformers engine with the tiny model: invariants, log-probs, weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.synth import get_task
from anytime.trajectory import Trajectory
from services.engines.seam import GenerationRequest
from services.engines.transformers_engine import TransformersEngine
from services.rollout.anytime_rollout import rollout
from tests.conftest import anytime_cli
from tests.integration.rollout_checks import check_rollout

pytestmark = pytest.mark.integration

SAMPLED = RolloutConfig(budgets=(16, 32, 48, 64), group_size=4, num_summaries=3, summary_max_tokens=24)
GREEDY = RolloutConfig(
    budgets=(16, 32, 48, 64),
    group_size=1,
    num_summaries=1,
    summary_max_tokens=24,
    sampling=SamplingConfig(temperature=0.0),
)
PROBLEMS = get_task("digit-chain").generate(8, seed=3)


def test_sampled_rollout_keeps_every_invariant(warm_model_dir: Path) -> None:
    engine = TransformersEngine.from_model_dir(warm_model_dir)
    trajectories = rollout(engine, PROBLEMS, SAMPLED, run_id="r", step=2, seed=1)
    endings = check_rollout(trajectories, PROBLEMS, SAMPLED, engine.facts)
    # The warm model ends thoughts every way at these budgets, so every branch above was exercised.
    assert endings["think_end"] > 0 and endings["eos"] + endings["length"] > 0, endings
    assert {t.policy_version for t in trajectories} == {0}
    assert trajectories[0].id == "r:2:digit-chain-0:0"


def test_same_seed_same_rollout_other_seed_other_rollout(warm_model_dir: Path) -> None:
    engine = TransformersEngine.from_model_dir(warm_model_dir)
    first = rollout(engine, PROBLEMS[:2], SAMPLED, run_id="r", step=0, seed=5)
    again = rollout(engine, PROBLEMS[:2], SAMPLED, run_id="r", step=0, seed=5)
    other = rollout(engine, PROBLEMS[:2], SAMPLED, run_id="r", step=0, seed=6)
    assert [t.model_dump_json() for t in first] == [t.model_dump_json() for t in again]
    assert [t.thinking_ids for t in first] != [t.thinking_ids for t in other]


def test_recorded_logprobs_equal_a_full_forward(warm_model_dir: Path) -> None:
    """Prefill sharing, cache expansion, left padding and row eviction leave log-probs exact."""
    engine = TransformersEngine.from_model_dir(warm_model_dir, max_rows=5)  # several chunks
    trajectories = rollout(engine, PROBLEMS[:3], SAMPLED, run_id="r", step=0, seed=2)
    model = engine.model
    checked = 0
    for t in trajectories[:6]:
        for cut in t.cuts:
            for s in cut.summaries[:2]:
                prefix = [*t.prompt_ids, *t.thinking_ids[: cut.cut], *cut.inserted_ids, *cut.delimiter_ids]
                ids = torch.tensor([[*prefix, *s.ids]])
                with torch.no_grad():
                    logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
                positions = torch.arange(len(prefix) - 1, ids.shape[1] - 1)
                expected = logp[positions, ids[0, len(prefix) :]]
                assert torch.allclose(torch.tensor(s.logprobs), expected, atol=1e-4)
                checked += 1
        full = torch.tensor([[*t.prompt_ids, *t.thinking_ids]])
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0].float(), dim=-1)
        n = len(t.prompt_ids)
        expected = logp[torch.arange(n - 1, full.shape[1] - 1), full[0, n:]]
        assert torch.allclose(torch.tensor(t.thinking_logprobs), expected, atol=1e-4)
    assert checked >= 12


def test_greedy_decode_matches_hugging_face_generate(warm_model_dir: Path) -> None:
    engine = TransformersEngine.from_model_dir(warm_model_dir)
    prompts = [tuple(range(3, 3 + k)) for k in (5, 9, 14)]  # different lengths: left padding in play
    requests = [GenerationRequest(str(i), p, 1, 12, ()) for i, p in enumerate(prompts)]
    ours = engine.generate(requests, SamplingConfig(temperature=0.0))
    for i, prompt in enumerate(prompts):
        out = engine.model.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=None
        )
        assert list(ours[str(i)][0].ids) == out[0, len(prompt) :].tolist()


def test_weight_update_equals_a_fresh_engine(tiny_model_dir: Path, warm_model_dir: Path) -> None:
    engine = TransformersEngine.from_model_dir(tiny_model_dir)
    before = rollout(engine, PROBLEMS, GREEDY, run_id="r", step=0)
    engine.load_weights(warm_model_dir, policy_version=1)
    after = rollout(engine, PROBLEMS, GREEDY, run_id="r", step=1)
    fresh = rollout(TransformersEngine.from_model_dir(warm_model_dir), PROBLEMS, GREEDY, run_id="r", step=1)
    assert [t.thinking_ids for t in after] == [t.thinking_ids for t in fresh]
    assert [c.summaries[0].ids for t in after for c in t.cuts] == [
        c.summaries[0].ids for t in fresh for c in t.cuts
    ]
    assert [t.thinking_ids for t in after] != [t.thinking_ids for t in before]
    assert {t.policy_version for t in before} == {0} and {t.policy_version for t in after} == {1}


def test_cli_writes_one_trajectory_per_trace(warm_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    anytime_cli("data", "synth", "--n", "3", "--seed", "4", "--out", str(data))
    out = tmp_path / "traj.jsonl"
    run = anytime_cli(
        "rollout", "--model", str(warm_model_dir), "--data", str(data), "--out", str(out),
        "--budgets", "16,32", "--group", "2", "--summaries", "2", "--summary-tokens", "8", "--seed", "1",
    )  # fmt: skip
    assert "6 traces of 3 problems (transformers engine)" in run.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6
    for line in lines:
        assert {"problem_id", "answer", "thinking_ids", "finish_reason", "cuts", "policy_version"} <= set(
            line
        )
        for cut in line["cuts"]:
            assert {"budgets", "cut", "inserted_ids", "summaries"} <= set(cut)
            assert all({"ids", "logprobs", "text"} <= set(s) for s in cut["summaries"])
        Trajectory.model_validate(line)


def test_cli_refuses_bad_input_without_writing(warm_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    data = tmp_path / "problems.jsonl"
    anytime_cli("data", "synth", "--n", "2", "--out", str(data))
    for args, message in [
        (["--budgets", "32,16"], "strictly increasing"),
        (["--engine", "tensorrt"], "--engine must be"),
        (["--temperature", "0", "--summaries", "2"], None),  # greedy with A > 1 is allowed (copies)
    ]:
        run = anytime_cli(
            "rollout", "--model", str(warm_model_dir), "--data", str(data), "--out", str(out), *args,
            check=False,
        )  # fmt: skip
        if message is None:
            assert run.returncode == 0, run.stderr
            out.unlink()
        else:
            assert run.returncode == 2 and message in run.stderr, run.stderr
            assert not out.exists()
    run = anytime_cli(
        "rollout", "--model", str(tmp_path), "--data", str(data), "--out", str(out), check=False
    )
    assert run.returncode == 2 and "no config.json" in run.stderr
    assert not out.exists()
