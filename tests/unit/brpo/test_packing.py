"""Tree packing layout on hand-made ids: positions, the tree mask, roles, credit and padding."""

from __future__ import annotations

import pytest
import torch

from anytime.brpo.cuts import cut_trace
from anytime.brpo.packing import PackedTree, collate_trees, pack_tree, tree_attention_mask
from anytime.brpo.tokens import TokenRole

ELLIPSIS, DELIM = (91, 92), (81,)
PAD, THINK_END = 0, 7
PROMPT = [1, 2]
THINKING = [10, 11, 12, 13, THINK_END]  # 5 tokens, closed
BUDGETS = [2, 4, 6]  # cuts at 2, 4 and 5 (the last budget collapses onto the whole thought)


def _tree(with_advantages: bool = False) -> PackedTree:
    cuts = cut_trace(len(THINKING), "think_end", BUDGETS, ELLIPSIS, DELIM)
    summaries = [[[30 + j, 40 + j], [50 + j]] for j in range(3)]  # A = 2, lengths 2 and 1
    if not with_advantages:
        return pack_tree(PROMPT, THINKING, cuts, summaries)
    thinking_adv = torch.tensor([0.1, 0.2, 0.3])
    summary_adv = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    return pack_tree(PROMPT, THINKING, cuts, summaries, thinking_adv, summary_adv)


def test_layout_and_positions() -> None:
    tree = _tree()
    # trunk (7) | 91 92 81 30 40 | 91 92 81 50 | (j=1) 91 92 81 31 41 | 91 92 81 51 |
    # (j=2, closed: no ellipsis) 81 32 42 | 81 52
    assert tree.input_ids.tolist() == [
        1, 2, 10, 11, 12, 13, 7,
        91, 92, 81, 30, 40, 91, 92, 81, 50,
        91, 92, 81, 31, 41, 91, 92, 81, 51,
        81, 32, 42, 81, 52,
    ]  # fmt: skip
    blocks = [(b.start, b.end, b.budget_index, b.sample_index, b.cut) for b in tree.blocks]
    assert blocks == [(7, 12, 0, 0, 2), (12, 16, 0, 1, 2), (16, 21, 1, 0, 4), (21, 25, 1, 1, 4),
                      (25, 28, 2, 0, 5), (28, 30, 2, 1, 5)]  # fmt: skip
    positions = tree.position_ids.tolist()
    assert positions[:7] == list(range(7))
    assert positions[7:12] == [4, 5, 6, 7, 8]  # continues from prompt (2) + cut (2)
    assert positions[12:16] == [4, 5, 6, 7]  # a sibling restarts at the same position
    assert positions[25:28] == [7, 8, 9]  # collapsed cut: continues from the whole thought


def test_each_block_sees_its_prefix_and_itself_only() -> None:
    tree = _tree()
    mask = tree.dense_mask()
    assert torch.equal(mask[:7, :7], torch.ones(7, 7).tril().bool())  # plain causal trunk
    assert not mask[:7, 7:].any()
    row = mask[13]  # second token of block (j=0, a=1), which spans [12, 16)
    assert row.nonzero().flatten().tolist() == [0, 1, 2, 3, 12, 13]  # prompt + z[:2] + own block so far
    row = mask[26]  # block (j=2, a=0) spans [25, 28), prefix prompt + z[:5]
    assert row.nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 25, 26]


def test_first_block_token_is_predicted_from_its_prefix_and_never_trains() -> None:
    tree = _tree()
    source = tree.source_index.tolist()
    assert source[0] == -1 and source[1:7] == list(range(6))
    for block in tree.blocks:
        assert source[block.start] == len(PROMPT) + block.cut - 1
        assert source[block.start + 1 : block.end] == list(range(block.start, block.end - 1))
        assert not tree.trainable[block.start]


def test_roles_trainable_mask_and_advantages() -> None:
    tree = _tree(with_advantages=True)
    p, t, i, s = (
        int(r) for r in (TokenRole.PROMPT, TokenRole.THINKING, TokenRole.INSERTED, TokenRole.SUMMARY)
    )
    assert tree.roles[:12].tolist() == [p, p, t, t, t, t, t, i, i, i, s, s]
    assert tree.trainable.tolist()[:12] == [
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        True,
        True,
    ]
    advantages = tree.advantages.tolist()
    # thinking segments [0,2) → 0.1, [2,4) → 0.2, [4,5) → 0.3 (the first budget covering the end)
    assert advantages[2:7] == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3])
    assert advantages[7:16] == pytest.approx([0, 0, 0, 1, 1, 0, 0, 0, 2])
    assert advantages[25:30] == pytest.approx([0, 5, 5, 0, 6])


def test_collate_pads_rows_that_attend_only_to_themselves() -> None:
    tree = _tree()
    cuts = cut_trace(1, "length", BUDGETS, ELLIPSIS, DELIM)
    small = pack_tree(PROMPT, [10], cuts, [[[60]], [[61]], [[62]]])
    batch = collate_trees([tree, small], PAD, multiple_of=8)
    assert batch.shape == (2, 32)
    assert batch.input_ids[1, small.length :].eq(PAD).all()
    assert not batch.trainable[1, small.length :].any()
    mask = batch.dense_mask()
    assert mask.shape == (2, 1, 32, 32)
    pad_rows = mask[1, 0, small.length :]
    assert torch.equal(pad_rows.sum(-1), torch.ones(32 - small.length, dtype=torch.long))
    assert torch.equal(mask[0, 0, : tree.length, : tree.length], tree.dense_mask())
    filled = batch.with_advantages(torch.tensor([[1.0, 2.0, 3.0]] * 2), torch.ones(2, 3, 2) * 9)
    assert filled.advantages[1, 2].item() == 1.0 and filled.advantages[1, small.length - 1].item() == 9.0


def test_trees_sharing_a_row_never_see_each_other() -> None:
    first = _tree()
    cuts = cut_trace(1, "length", BUDGETS, ELLIPSIS, DELIM)
    second = pack_tree(PROMPT, [10], cuts, [[[60]], [[61]], [[62]]])
    batch = collate_trees([first, second, first], PAD, max_row_tokens=first.length + second.length)
    assert batch.shape == (2, first.length + second.length)
    assert [(p.row, p.offset) for p in batch.placements] == [(0, 0), (0, first.length), (1, 0)]
    mask = batch.dense_mask()[0, 0]
    split = first.length
    assert not mask[split:, :split].any(), "the second tree sees nothing of the first"
    assert torch.equal(mask[:split, :split], first.dense_mask())
    assert torch.equal(mask[split:, split:], second.dense_mask())
    assert torch.equal(batch.tree_values(batch.input_ids, 1), second.input_ids)
    assert batch.tree_values(batch.source_index, 1)[0].item() == -1
    assert torch.equal(batch.tree_values(batch.source_index, 1)[1:], second.source_index[1:] + split)
    assert batch.tree_index[0, :split].eq(0).all() and batch.tree_index[0, split:].eq(1).all()
    filled = batch.with_advantages(
        torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]), torch.zeros(3, 3, 2)
    )
    assert batch.tree_values(filled.advantages, 1)[2].item() == 2.0  # the second tree's thinking token
    assert filled.advantages[1, 2].item() == 3.0


def test_mask_rule_matches_the_reference_offsets() -> None:
    # Reference rule: visible iff causal and (k < q - start_offset or k >= q - end_offset) (docs/method.md
    # §2.10).
    tree = _tree()
    t = tree.length
    q = torch.arange(t)
    start_offset = q - torch.where(tree.prefix_end > 0, tree.prefix_end, 0)
    end_offset = q - tree.block_start
    k, qq = torch.arange(t)[None, :], q[:, None]
    reference = (k <= qq) & ((k < qq - start_offset[:, None]) | (k >= qq - end_offset[:, None]))
    assert torch.equal(tree_attention_mask(tree.prefix_end[None], tree.block_start[None])[0], reference)


def test_bad_trees_are_refused() -> None:
    cuts = cut_trace(len(THINKING), "think_end", BUDGETS, ELLIPSIS, DELIM)
    with pytest.raises(ValueError, match="summaries for each of the 3 budgets"):
        pack_tree(PROMPT, THINKING, cuts, [[[1]], [[1]]])
    with pytest.raises(ValueError, match="same number A"):
        pack_tree(PROMPT, THINKING, cuts, [[[1]], [[1], [2]], [[1]]])
    too_long = cut_trace(8, "length", BUDGETS, ELLIPSIS, DELIM)
    with pytest.raises(ValueError, match="longer than the largest budget"):
        pack_tree(PROMPT, list(range(8)), too_long, [[[1]], [[1]], [[1]]])
    bare = cut_trace(len(THINKING), "think_end", BUDGETS, ELLIPSIS, ())
    with pytest.raises(ValueError, match="must open with inserted or delimiter ids"):
        pack_tree(PROMPT, THINKING, bare, [[[1]], [[1]], [[1]]])
