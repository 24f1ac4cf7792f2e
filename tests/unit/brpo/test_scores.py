"""Per-summary rewards → R[B, G, S]: a mean over A, collapsed budgets split into their own chunks."""

from __future__ import annotations

import pytest
import torch

from anytime.brpo.cuts import cut_trace
from anytime.brpo.scores import budget_scores, prefix_groups, reward_tensor, trace_rewards

ELLIPSIS, DELIM = (91, 92, 93), (81, 82)


def test_collapsed_cut_samples_are_split_in_order() -> None:
    cuts = cut_trace(10, "think_end", [4, 8, 12, 16], ELLIPSIS, DELIM)
    rewards = trace_rewards(cuts, [[0, 1], [1, 1], [1, 0, 1, 1]], num_summaries=2)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(budget_scores(rewards[None, None]), torch.tensor([[[0.5, 1.0, 0.5, 1.0]]]))


def test_batch_of_groups() -> None:
    budgets = [4, 8]
    long = cut_trace(8, "length", budgets, ELLIPSIS, DELIM)
    short = cut_trace(3, "think_end", budgets, ELLIPSIS, DELIM)  # both budgets collapse
    cuts = [[long, short], [short, long]]
    per_cut = [[[[1], [0]], [[1, 0]]], [[[0, 0]], [[1], [1]]]]
    rewards = reward_tensor(cuts, per_cut, num_summaries=1)
    assert rewards.shape == (2, 2, 2, 1)
    torch.testing.assert_close(
        budget_scores(rewards), torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]])
    )
    assert prefix_groups(cuts).tolist() == [[[0, 1], [0, 0]], [[0, 0], [0, 1]]]


def test_wrong_sample_counts_are_refused() -> None:
    cuts = cut_trace(3, "think_end", [4, 8], ELLIPSIS, DELIM)
    with pytest.raises(ValueError, match="serves 2 budget"):
        trace_rewards(cuts, [[1.0, 0.0]], num_summaries=2)
