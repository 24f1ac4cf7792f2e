"""Cuts, summary prompts and per-budget bookkeeping at the token level, on hand-made ids."""

from __future__ import annotations

import pytest

from anytime.brpo.cuts import (
    cut_of_budget,
    cut_trace,
    finish_reason,
    split_by_budget,
    trace_cuts,
)
from anytime.model_facts import ModelFacts

ELLIPSIS = (91, 92, 93)
DELIM = (81, 82)
THINK_END, EOS = 7, 2


@pytest.mark.parametrize(
    ("ids", "reason"),
    [([5, 6, THINK_END], "think_end"), ([5, 6, EOS], "eos"), ([5, 6], "length"), ([], "length")],
)
def test_finish_reason_from_the_last_id(ids: list[int], reason: str) -> None:
    assert finish_reason(ids, THINK_END, EOS) == reason


def test_collapsed_budgets_get_their_own_summaries_in_order() -> None:
    cuts = cut_trace(10, "think_end", [4, 8, 12, 16], ELLIPSIS, DELIM)
    assert [c.num_samples(2) for c in cuts] == [2, 2, 4]
    per_cut = [["a0", "a1"], ["b0", "b1"], ["c0", "c1", "c2", "c3"]]
    assert split_by_budget(cuts, per_cut, 2) == [["a0", "a1"], ["b0", "b1"], ["c0", "c1"], ["c2", "c3"]]
    assert [c.cut for c in cut_of_budget(cuts)] == [4, 8, 10, 10]
    with pytest.raises(ValueError, match="needs 4 samples"):
        split_by_budget(cuts, [["a0", "a1"], ["b0", "b1"], ["c0", "c1"]], 2)


def test_eos_ended_trace_is_closed_by_the_ellipsis_at_full_length() -> None:
    thinking = [10, 11, 12, 13, 14, EOS]
    cuts = cut_trace(len(thinking), finish_reason(thinking, THINK_END, EOS), [4, 8], ELLIPSIS, DELIM)
    assert [(c.cut, c.budget_indices) for c in cuts] == [(4, (0,)), (6, (1,))]
    full = cuts[-1].summary_prompt([1], thinking)
    assert full == [1, *thinking, *ELLIPSIS, *DELIM]
    assert full[len(thinking)] == EOS  # the prefix ends in EOS: the verifier scores this cut 0


def test_trace_at_b_max_without_think_end_is_cut_like_any_other() -> None:
    thinking = [10, 11, 12, 13, 14, 15, 16, 17]
    cuts = cut_trace(len(thinking), finish_reason(thinking, THINK_END, EOS), [4, 8], ELLIPSIS, DELIM)
    assert [c.cut for c in cuts] == [4, 8]
    assert all(c.inserted_ids == ELLIPSIS for c in cuts)
    assert cuts[1].block_prefix_ids == (*ELLIPSIS, *DELIM)


def test_trace_cuts_read_the_markers() -> None:
    facts = ModelFacts(
        think_start_id=6,
        think_end_id=THINK_END,
        eos_id=EOS,
        pad_id=0,
        ellipsis_ids=ELLIPSIS,
        delimiter_ids=DELIM,
    )
    closed = trace_cuts([10, 11, 12, THINK_END], [2, 8], facts)
    assert [(c.cut, c.inserted_ids) for c in closed] == [(2, ELLIPSIS), (4, ())]
    ended = trace_cuts([10, 11, 12, EOS], [2, 8], facts)
    assert ended[-1].inserted_ids == ELLIPSIS
