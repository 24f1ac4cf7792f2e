"""The data-parallel learner's pure parts: each rank's share of a mini-batch, the merge of the ranks'
statistics, the worker's setting. (Two real processes: tests/integration/test_learner_distributed.py.)"""

from __future__ import annotations

import pytest

from services.learner.distributed import DataParallel
from services.learner.settings import LearnerSettings
from services.learner.update import UpdateStats


def _shares(world_size: int, trees: list[int], lengths: list[int]) -> list[list[int]]:
    return [DataParallel(rank, world_size).share(trees, lengths) for rank in range(world_size)]


def test_every_tree_goes_to_one_rank_in_contiguous_token_balanced_runs() -> None:
    trees = [4, 5, 6, 7, 8, 9]
    assert _shares(1, trees, [10] * 6) == [trees]
    # Middles at 5, 15, …, 55 of 60 tokens: the first three below 30 go to rank 0.
    assert _shares(2, trees, [10] * 6) == [[4, 5, 6], [7, 8, 9]]
    # A long tree weighs as much as several short ones: 100 tokens against 5 × 20.
    assert _shares(2, trees, [100, 20, 20, 20, 20, 20]) == [[4], [5, 6, 7, 8, 9]]
    assert _shares(3, trees, [10] * 6) == [[4, 5], [6, 7], [8, 9]]
    # Fewer trees than ranks: some ranks hold nothing (they still take part in the reductions).
    shares = _shares(4, [0, 1], [30, 30])
    assert sorted(t for share in shares for t in share) == [0, 1] and shares.count([]) == 2
    assert _shares(2, [], []) == [[], []]


def test_merged_statistics_add_the_ranks_token_sums_and_mini_batch_losses() -> None:
    first = UpdateStats(sums={"policy/clip_fraction": 1.0}, tokens=10.0, minibatch_losses=[0.5, -0.25])
    first.grad_norms, first.optimizer_steps, first.micro_batches = [2.0, 3.0], 2, 3
    first.stale_tokens, first.behaviour_weight_sum, first.behaviour_truncated = 4.0, 3.0, 1.0
    second = UpdateStats(
        sums={"policy/clip_fraction": 3.0, "policy/entropy": 6.0}, tokens=30.0, minibatch_losses=[0.25, 0.0]
    )
    second.grad_norms, second.optimizer_steps, second.micro_batches = [2.0, 3.0], 2, 1
    merged = UpdateStats.merged([first, second])
    assert merged.tokens == 40.0 and merged.micro_batches == 4 and merged.optimizer_steps == 2
    assert merged.minibatch_losses == [0.75, -0.25] and merged.grad_norms == [2.0, 3.0]
    metrics = merged.as_metrics(lr=1e-6)
    assert metrics["policy/clip_fraction"] == pytest.approx(0.1) and metrics["policy/entropy"] == 0.15
    assert metrics["loss/policy"] == 0.25 and metrics["optim/grad_norm"] == 2.5
    assert metrics["policy/behaviour_weight_mean"] == 0.75
    assert metrics["policy/behaviour_weight_truncated_fraction"] == 0.25


def test_one_learner_process_unless_the_worker_is_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LearnerSettings().world_size == 1
    monkeypatch.setenv("ANYTIME_LEARNER_WORLD_SIZE", "2")
    assert LearnerSettings().world_size == 2
    with pytest.raises(ValueError, match="world_size"):
        LearnerSettings(world_size=0)
