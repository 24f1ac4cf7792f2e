"""Cuts and summary prompts at the token level (docs/method.md §2.3), on hand-made id lists."""

from __future__ import annotations

import pytest

from anytime.brpo.cuts import cut_trace

ELLIPSIS = (91, 92, 93)
DELIM = (81, 82)
THINK_END = 7


def test_cut_thought_gets_the_ellipsis_and_collapsed_budgets_share_one_cut() -> None:
    # A closed trace of 10 tokens, budgets 4, 8, 12, 16: cuts at 4, 8, and 10 serving budgets 2 and 3.
    cuts = cut_trace(10, "think_end", [4, 8, 12, 16], ELLIPSIS, DELIM)
    assert [c.cut for c in cuts] == [4, 8, 10]
    assert [c.budget_indices for c in cuts] == [(0,), (1,), (2, 3)]
    assert [c.budgets_served for c in cuts] == [1, 1, 2]
    assert [c.inserted_ids for c in cuts] == [ELLIPSIS, ELLIPSIS, ()]
    assert all(c.delimiter_ids == DELIM for c in cuts)


@pytest.mark.parametrize("reason", ["eos", "length"])
def test_unclosed_thought_gets_the_ellipsis_even_at_full_length(reason: str) -> None:
    cuts = cut_trace(6, reason, [3, 6, 9], ELLIPSIS, DELIM)  # type: ignore[arg-type]
    assert [c.cut for c in cuts] == [3, 6]
    assert [c.inserted_ids for c in cuts] == [ELLIPSIS, ELLIPSIS]


def test_summary_prompt_appends_ids_without_retokenizing() -> None:
    prompt, thinking = [1, 2], [10, 11, 12, 13, THINK_END]
    cut, full = cut_trace(len(thinking), "think_end", [2, 8], ELLIPSIS, DELIM)
    assert cut.summary_prompt(prompt, thinking) == [1, 2, 10, 11, 91, 92, 93, 81, 82]
    assert full.summary_prompt(prompt, thinking) == [1, 2, 10, 11, 12, 13, THINK_END, 81, 82]
    assert full.thought_closed_in_prefix and not cut.thought_closed_in_prefix


@pytest.mark.parametrize("budgets", [[4, 4], [8, 4], [0, 4], []])
def test_bad_budgets_are_refused(budgets: list[int]) -> None:
    if not budgets:
        assert cut_trace(3, "think_end", budgets, ELLIPSIS, DELIM) == []
        return
    with pytest.raises(ValueError, match="strictly increasing"):
        cut_trace(10, "think_end", budgets, ELLIPSIS, DELIM)
