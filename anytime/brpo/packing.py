"""Tree packing (docs/method.md §2.10): one trace and all its summary blocks in one sequence.

Layout, blocks ordered by cut, then sample:

    [prompt | thinking z | inserted+delim+summary (j=0, a=0) | … | (j=S-1, a=A-1)]

Every token carries two offsets that define what it may attend to (the reference's tree mask):
a key k is visible to query q iff `k <= q` and (`k < prefix_end[q]` or `k >= block_start[q]`)
(and, once batched, `k >= doc_start[q]`, so trees sharing a row stay apart).
Prompt and thinking tokens have `prefix_end = block_start = 0` (plain causal attention); a summary
block's tokens see the prompt and `z[:c_j]` (`prefix_end = P + c_j`) and their own block causally
(`block_start` = the block's first index), never later thinking or another block. Block positions
continue from the cut: token u of a block has position `P + c_j + u`.

The first token of a block is predicted from the end of its prefix, not from the token packed before
it; `source_index` records that, so packed log-probs equal unpacked ones at every token. It is an
inserted token in any case (untrainable), as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from anytime.brpo.cuts import Cut, cut_of_budget
from anytime.brpo.tokens import TokenRole, thinking_segments, token_advantages, trainable_mask


@dataclass(frozen=True)
class BlockSpan:
    """Where summary a of budget j sits in the packed sequence: `[start, end)`, `prefix_len` inserted ids."""

    start: int
    end: int
    budget_index: int
    sample_index: int
    cut: int
    prefix_len: int


@dataclass(frozen=True)
class PackedTree:
    """One packed trace. All tensors are 1-D over the packed length T.

    input_ids, position_ids: [T] long
    prefix_end, block_start: [T] long — the attention rule above
    source_index: [T] long — the position whose logits predict token t (-1: nothing predicts it)
    roles: [T] long `TokenRole`; budget_index, sample_index: [T] long (-1 where they do not apply)
    advantages: [T] float (0 until advantages are given); trainable: [T] bool
    """

    input_ids: Tensor
    position_ids: Tensor
    prefix_end: Tensor
    block_start: Tensor
    source_index: Tensor
    roles: Tensor
    budget_index: Tensor
    sample_index: Tensor
    advantages: Tensor
    trainable: Tensor
    prompt_len: int
    thinking_len: int
    blocks: tuple[BlockSpan, ...]

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    def dense_mask(self) -> Tensor:
        """[T, T] bool, True where query (row) may attend to key (column)."""
        return tree_attention_mask(self.prefix_end[None], self.block_start[None])[0]


def tree_attention_mask(prefix_end: Tensor, block_start: Tensor, doc_start: Tensor | None = None) -> Tensor:
    """[N, T] offsets → [N, T, T] bool:
    `doc_start[q] <= k <= q and (k < prefix_end[q] or k >= block_start[q])`."""
    length = prefix_end.shape[-1]
    index = torch.arange(length, device=prefix_end.device)
    q, k = index[:, None], index[None, :]
    visible = (k <= q) & ((k < prefix_end[..., :, None]) | (k >= block_start[..., :, None]))
    return visible if doc_start is None else visible & (k >= doc_start[..., :, None])


def pack_tree(
    prompt_ids: Sequence[int],
    thinking_ids: Sequence[int],
    cuts: Sequence[Cut],
    summaries: Sequence[Sequence[Sequence[int]]],
    thinking_adv: Tensor | None = None,
    summary_adv: Tensor | None = None,
) -> PackedTree:
    """Pack a trace with its summaries: `summaries[j][a]` are the generated ids of summary a at budget j.

    cuts: from `cut_trace` for this trace (collapsed budgets share a cut; each budget still has A summaries).
    thinking_adv: [S], summary_adv: [S, A] — optional; without them advantages are 0 (fill them later,
    for a whole batch, with `PackedBatch.with_advantages`).
    """
    by_budget = cut_of_budget(cuts)
    num_budgets = len(by_budget)
    if len(summaries) != num_budgets or not summaries:
        raise ValueError(f"need summaries for each of the {num_budgets} budgets; got {len(summaries)} groups")
    num_summaries = len(summaries[0])
    if any(len(group) != num_summaries for group in summaries):
        counts = [len(g) for g in summaries]
        raise ValueError(f"every budget needs the same number A of summaries; got {counts}")
    prompt_len, thinking_len = len(prompt_ids), len(thinking_ids)
    cut_ends = [cut.cut for cut in by_budget]
    if cut_ends[-1] != thinking_len:
        raise ValueError(
            f"the last cut ({cut_ends[-1]}) must be the whole thought ({thinking_len} tokens); "
            "a thought longer than the largest budget cannot be trained on"
        )

    trunk = prompt_len + thinking_len
    ids: list[int] = [*prompt_ids, *thinking_ids]
    position = list(range(trunk))
    prefix_end = [0] * trunk
    block_start = [0] * trunk
    source = list(range(-1, trunk - 1))
    roles = [TokenRole.PROMPT] * prompt_len + [TokenRole.THINKING] * thinking_len
    budget_index = [-1] * prompt_len + thinking_segments(thinking_len, cut_ends).tolist()
    sample_index = [-1] * trunk
    blocks = []
    for j, cut in enumerate(by_budget):
        head = cut.block_prefix_ids
        if not head:
            raise ValueError("a summary block must open with inserted or delimiter ids (never trainable)")
        for a, summary in enumerate(summaries[j]):
            start, visible, body = len(ids), prompt_len + cut.cut, [*head, *summary]
            ids += body
            position += range(visible, visible + len(body))
            prefix_end += [visible] * len(body)
            block_start += [start] * len(body)
            # The first token is predicted by the last token of its own prefix (prompt + z[:c]).
            source += [visible - 1, *range(start, start + len(body) - 1)]
            roles += [TokenRole.INSERTED] * len(head) + [TokenRole.SUMMARY] * len(summary)
            budget_index += [j] * len(body)
            sample_index += [a] * len(body)
            blocks.append(BlockSpan(start, len(ids), j, a, cut.cut, len(head)))

    roles_t = torch.tensor([int(r) for r in roles], dtype=torch.long)
    budget_t = torch.tensor(budget_index, dtype=torch.long)
    sample_t = torch.tensor(sample_index, dtype=torch.long)
    if thinking_adv is None and summary_adv is None:
        advantages = torch.zeros(len(ids))
    elif thinking_adv is not None and summary_adv is not None:
        if thinking_adv.shape != (num_budgets,) or summary_adv.shape != (num_budgets, num_summaries):
            raise ValueError(
                f"advantages must be [S]=[{num_budgets}] and [S, A]=[{num_budgets}, {num_summaries}]; "
                f"got {list(thinking_adv.shape)} and {list(summary_adv.shape)}"
            )
        advantages = token_advantages(roles_t, budget_t, sample_t, thinking_adv, summary_adv)
    else:
        raise ValueError("give both thinking and summary advantages, or neither")
    return PackedTree(
        input_ids=torch.tensor(ids, dtype=torch.long),
        position_ids=torch.tensor(position, dtype=torch.long),
        prefix_end=torch.tensor(prefix_end, dtype=torch.long),
        block_start=torch.tensor(block_start, dtype=torch.long),
        source_index=torch.tensor(source, dtype=torch.long),
        roles=roles_t,
        budget_index=budget_t,
        sample_index=sample_t,
        advantages=advantages,
        trainable=trainable_mask(roles_t),
        prompt_len=prompt_len,
        thinking_len=thinking_len,
        blocks=tuple(blocks),
    )


@dataclass(frozen=True)
class Placement:
    """Where a tree sits in a batch: row, first index in the row, and its length."""

    row: int
    offset: int
    length: int


@dataclass(frozen=True)
class PackedBatch:
    """Packed trees in N rows of length T: the fields of `PackedTree` as [N, T] tensors, plus

    doc_start: [N, T] long — first index of the token's tree in its row (nothing before it is visible),
        so several trees can share a row back to back without seeing each other;
    tree_index: [N, T] long — which tree (input order) the token belongs to, -1 for padding;
    placements: one `Placement` per tree, in input order.
    Offsets (`prefix_end`, `block_start`, `source_index`) are row indices. Padding attends only to itself
    and never trains.
    """

    input_ids: Tensor
    position_ids: Tensor
    doc_start: Tensor
    prefix_end: Tensor
    block_start: Tensor
    source_index: Tensor
    roles: Tensor
    budget_index: Tensor
    sample_index: Tensor
    tree_index: Tensor
    advantages: Tensor
    trainable: Tensor
    placements: tuple[Placement, ...]

    @property
    def shape(self) -> tuple[int, int]:
        n, t = self.input_ids.shape
        return int(n), int(t)

    def dense_mask(self) -> Tensor:
        """[N, 1, T, T] bool: the tree mask for every row, with a head axis to broadcast over."""
        return tree_attention_mask(self.prefix_end, self.block_start, self.doc_start)[:, None]

    def with_advantages(self, thinking_adv: Tensor, summary_adv: Tensor) -> PackedBatch:
        """Per-token advantages from thinking_adv [num_trees, S] and summary_adv [num_trees, S, A]."""
        advantages = token_advantages(
            self.roles, self.budget_index, self.sample_index, thinking_adv, summary_adv, self.tree_index
        )
        return replace(self, advantages=advantages)

    def tree_values(self, values: Tensor, tree: int) -> Tensor:
        """[N, T] per-token values (log-probs, advantages, …) → [length] for one tree, in its own order."""
        where = self.placements[tree]
        return values[where.row, where.offset : where.offset + where.length]

    def to(self, device: torch.device | str) -> PackedBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "placements"}
        return replace(self, **{name: value.to(device) for name, value in moved.items()})


def _rows(trees: Sequence[PackedTree], max_row_tokens: int | None) -> list[list[int]]:
    """Tree indices per row: one tree per row, or trees in order back to back up to `max_row_tokens`."""
    if max_row_tokens is None:
        return [[index] for index in range(len(trees))]
    rows: list[list[int]] = []
    used = 0
    for index, tree in enumerate(trees):
        if rows and used + tree.length <= max_row_tokens:
            rows[-1].append(index)
            used += tree.length
        else:
            rows.append([index])
            used = tree.length
    return rows


def collate_trees(
    trees: Sequence[PackedTree], pad_id: int, multiple_of: int = 1, max_row_tokens: int | None = None
) -> PackedBatch:
    """Lay trees out in rows and right-pad the rows to one length (rounded up to `multiple_of`, e.g. 128
    for FlexAttention).

    With `max_row_tokens`, consecutive trees share a row up to that many tokens (no padding between
    them, as the reference's padding-free packing); otherwise each tree has its own row.
    """
    if not trees:
        raise ValueError("collate at least one tree")
    layout = _rows(trees, max_row_tokens)
    longest = max(sum(trees[i].length for i in row) for row in layout)
    length = -(-longest // multiple_of) * multiple_of
    columns: dict[str, list[Tensor]] = {name: [] for name in _ROW_FIELDS}
    placements: dict[int, Placement] = {}
    for row_number, row in enumerate(layout):
        parts: dict[str, list[Tensor]] = {name: [] for name in _ROW_FIELDS}
        offset = 0
        for index in row:
            tree = trees[index]
            placements[index] = Placement(row_number, offset, tree.length)
            for name, value in _shifted(tree, offset, index).items():
                parts[name].append(value)
            offset += tree.length
        for name, value in _padding(offset, length, pad_id).items():
            parts[name].append(value)
        for name in _ROW_FIELDS:
            columns[name].append(torch.cat(parts[name]))
    stacked = {name: torch.stack(values) for name, values in columns.items()}
    return PackedBatch(**stacked, placements=tuple(placements[i] for i in range(len(trees))))


_ROW_FIELDS = (
    "input_ids",
    "position_ids",
    "doc_start",
    "prefix_end",
    "block_start",
    "source_index",
    "roles",
    "budget_index",
    "sample_index",
    "tree_index",
    "advantages",
    "trainable",
)


def _shifted(tree: PackedTree, offset: int, index: int) -> dict[str, Tensor]:
    """A tree's fields with its offsets moved to start at `offset` in the row."""
    length = tree.length
    return {
        "input_ids": tree.input_ids,
        "position_ids": tree.position_ids,
        "doc_start": torch.full((length,), offset),
        # Trunk tokens: prefix [offset, offset) is empty and keys from `offset` on are causal.
        "prefix_end": tree.prefix_end + offset,
        "block_start": tree.block_start + offset,
        "source_index": torch.where(tree.source_index >= 0, tree.source_index + offset, -1),
        "roles": tree.roles,
        "budget_index": tree.budget_index,
        "sample_index": tree.sample_index,
        "tree_index": torch.full((length,), index),
        "advantages": tree.advantages,
        "trainable": tree.trainable,
    }


def _padding(start: int, end: int, pad_id: int) -> dict[str, Tensor]:
    """Padding tokens `[start, end)`: each sees only itself, predicts nothing and never trains."""
    count, own = end - start, torch.arange(start, end)
    return {
        "input_ids": torch.full((count,), pad_id),
        "position_ids": torch.zeros(count, dtype=torch.long),
        "doc_start": own,
        "prefix_end": own,
        "block_start": own,
        "source_index": torch.full((count,), -1),
        "roles": torch.full((count,), int(TokenRole.PADDING)),
        "budget_index": torch.full((count,), -1),
        "sample_index": torch.full((count,), -1),
        "tree_index": torch.full((count,), -1),
        "advantages": torch.zeros(count),
        "trainable": torch.zeros(count, dtype=torch.bool),
    }
