"""Token-level credit: segment boundaries and the gather of advantages by role."""

from __future__ import annotations

import torch

from anytime.brpo.tokens import TokenRole, thinking_segments, token_advantages, trainable_mask


def test_token_number_b_j_closes_segment_j() -> None:
    # 0-indexed positions [0, 4) are segment 0; position 4 (token number 5) opens segment 1.
    assert thinking_segments(10, [4, 8, 12, 16]).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert thinking_segments(16, [4, 8, 12, 16]).tolist()[-5:] == [2, 3, 3, 3, 3]
    assert thinking_segments(0, [4, 8]).tolist() == []


def test_trainable_roles() -> None:
    roles = torch.tensor([int(r) for r in TokenRole])
    assert trainable_mask(roles).tolist() == [False, False, True, False, True]


def test_advantages_follow_roles_segments_and_samples() -> None:
    p, t, i, s = TokenRole.PROMPT, TokenRole.THINKING, TokenRole.INSERTED, TokenRole.SUMMARY
    roles = torch.tensor([p, t, t, t, i, s, s, i, s, TokenRole.PADDING])
    budget = torch.tensor([-1, 0, 0, 1, 0, 0, 0, 1, 1, -1])
    sample = torch.tensor([-1, -1, -1, -1, 1, 1, 1, 0, 0, -1])
    thinking = torch.tensor([0.5, -0.25])
    summary = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    advantages = token_advantages(roles, budget, sample, thinking, summary)
    assert advantages.tolist() == [0.0, 0.5, 0.5, -0.25, 0.0, 2.0, 2.0, 0.0, 3.0, 0.0]
