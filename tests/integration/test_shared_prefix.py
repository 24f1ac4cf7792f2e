"""The transformers engine's shared-prefix decoding against its per-row-copy path, on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.synth import get_task
from anytime.tinymodel.build import TinyModelSpec
from anytime.trajectory import Trajectory
from services.engines.seam import GenerationRequest
from services.engines.transformers_engine import TransformersEngine
from services.rollout.anytime_rollout import rollout

pytestmark = pytest.mark.integration

PROBLEMS = get_task("digit-chain").generate(4, seed=5)
SAMPLED = RolloutConfig(budgets=(16, 32, 48, 64), group_size=3, num_summaries=3, summary_max_tokens=16)
GREEDY = SAMPLED.model_copy(update={"sampling": SamplingConfig(temperature=0.0)})


def _generated(trajectories: list[Trajectory]) -> list[tuple[list[int], list[float]]]:
    """Every generated sequence (thought, then its summaries) with its log-probs, in rollout order."""
    out = []
    for t in trajectories:
        out.append((t.thinking_ids, t.thinking_logprobs))
        out.extend((s.ids, s.logprobs) for c in t.cuts for s in c.summaries)
    return out


@pytest.mark.parametrize("config", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_shared_prefix_decoding_equals_per_row_copies(warm_model_dir: Path, config: RolloutConfig) -> None:
    """Same tokens, log-probs within 1e-5. Sampled too: rows keep their order, so the generator draws the
    same numbers for the same rows (only a float-rounding tie at a sampling boundary could differ)."""
    results = []
    for shared in (True, False):
        engine = TransformersEngine.from_model_dir(warm_model_dir, max_rows=7, shared_prefix=shared)
        results.append(_generated(rollout(engine, PROBLEMS, config, run_id="r", step=0, seed=3)))
    shared_path, copies = results
    assert [ids for ids, _ in shared_path] == [ids for ids, _ in copies]
    assert sum(len(ids) for ids, _ in shared_path) > 200
    for (_, ours), (_, theirs) in zip(shared_path, copies, strict=True):
        assert torch.allclose(torch.tensor(ours), torch.tensor(theirs), atol=1e-5, rtol=0)


def test_a_prompts_kv_is_held_once_whatever_its_number_of_samples(warm_model_dir: Path) -> None:
    """n = 16 summaries of one long prompt hold its KV once (batch dim 1); per-row copies hold it 16 times."""
    prompt = tuple(range(3, 303))
    held: dict[tuple[bool, int], tuple[int, int]] = {}
    for shared in (True, False):
        engine = TransformersEngine.from_model_dir(warm_model_dir, shared_prefix=shared)
        for n in (1, 16):
            with torch.inference_mode():
                logits, decoder = engine._prefill([GenerationRequest("s", prompt, n, 8, ())])
                for _ in range(3):
                    logits = decoder.step(logits.argmax(-1))
            held[shared, n] = decoder.cached_elements()
            if shared and n > 1:  # one row has no copies to save: it keeps the per-row path
                (group,) = decoder.prefix.groups  # type: ignore[attr-defined]
                assert all(k.shape[0] == 1 for k in group.keys)
    spec = TinyModelSpec()  # keys and values of every layer for one token:
    per_token = 2 * spec.num_hidden_layers * spec.num_key_value_heads * spec.hidden_size
    per_token //= spec.num_attention_heads
    # (prompt KV, generated KV) after 3 decode steps: only the generated part grows with the rows.
    assert held[True, 1] == held[False, 1] == (len(prompt) * per_token, 3 * per_token)
    assert held[True, 16] == (len(prompt) * per_token, 16 * 3 * per_token)
    assert held[False, 16] == (16 * len(prompt) * per_token, 16 * 3 * per_token)


def test_short_prompts_with_long_generations_keep_per_row_copies(warm_model_dir: Path) -> None:
    """Thinking-like requests: the prompt KV is small next to what the rows generate, so sharing it would
    only add the two-part attention's per-step work. So do long prompts with one row each (inference's
    answers): there is no copy to save."""
    engine = TransformersEngine.from_model_dir(warm_model_dir)
    with torch.inference_mode():
        _, thinking = engine._prefill([GenerationRequest("t", tuple(range(3, 43)), 4, 1024, ())])
        _, summaries = engine._prefill([GenerationRequest("s", tuple(range(3, 303)), 4, 32, ())])
        _, answers = engine._prefill(
            [GenerationRequest(f"a{i}", tuple(range(3 + i, 303)), 1, 32, ()) for i in range(4)]
        )
    assert not hasattr(thinking, "prefix") and hasattr(summaries, "prefix")
    assert not hasattr(answers, "prefix")
