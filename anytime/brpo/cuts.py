"""Cutting a thinking trace at budgets and building summary prompts at the token level (docs/method.md §2.3).

Torch-free: pure lists of token ids, so the rollout, the verifier and the learner all share it.
Inserted strings (ellipsis, delimiter) arrive as ids tokenized on their own (`ModelFacts`); the sampled
thinking ids are used as they are and never re-tokenized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from anytime.brpo.budgets import check_budgets

FinishReason = Literal["think_end", "eos", "length"]

T = TypeVar("T")


class Markers(Protocol):
    """The model's marker ids (`anytime.model_facts.ModelFacts` provides them from the tokenizer)."""

    @property
    def think_end_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    @property
    def ellipsis_ids(self) -> tuple[int, ...]: ...
    @property
    def delimiter_ids(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class Cut:
    """One distinct cut of a trace: `cut = min(b_j, len(z))` thinking tokens kept, serving `budgets_served`
    budgets.

    Budgets past the end of a finished trace collapse onto one cut (the whole trace); that cut is
    sampled `budgets_served * A` times and the samples are split in order, A per budget.
    """

    cut: int
    budget_indices: tuple[int, ...]
    inserted_ids: tuple[int, ...]
    delimiter_ids: tuple[int, ...]

    @property
    def budgets_served(self) -> int:
        return len(self.budget_indices)

    @property
    def block_prefix_ids(self) -> tuple[int, ...]:
        """`inserted + delimiter`: the untrainable ids that open every summary block of this cut."""
        return (*self.inserted_ids, *self.delimiter_ids)

    def summary_prompt(self, prompt_ids: Sequence[int], thinking_ids: Sequence[int]) -> list[int]:
        """`prompt + thinking[:cut] + inserted + delimiter`; the sampled ids are used as they are."""
        return [*prompt_ids, *thinking_ids[: self.cut], *self.inserted_ids, *self.delimiter_ids]

    def num_samples(self, num_summaries: int) -> int:
        """Summaries to sample from this cut's prompt: A for each budget it serves."""
        return self.budgets_served * num_summaries

    @property
    def thought_closed_in_prefix(self) -> bool:
        """True when the kept thinking itself ends the thought (nothing inserted)."""
        return not self.inserted_ids


def finish_reason(thinking_ids: Sequence[int], think_end_id: int, eos_id: int) -> FinishReason:
    """How a sampled thought stopped, from its last id: `</think>`, EOS, or neither (it hit `b_max`)."""
    if thinking_ids and thinking_ids[-1] == think_end_id:
        return "think_end"
    if thinking_ids and thinking_ids[-1] == eos_id:
        return "eos"
    return "length"


def cut_trace(
    thinking_len: int,
    finish_reason: FinishReason,
    budgets: Sequence[int],
    ellipsis_ids: Sequence[int],
    delimiter_ids: Sequence[int],
) -> list[Cut]:
    """Distinct cuts `c_j = min(b_j, len(z))`, ascending, each with the budgets it serves.

    The ellipsis is inserted when the thought was cut (`len(z) > b_j`) or never closed (finish reason
    `eos` or `length`), and left out when the whole closed thought fits the budget.
    """
    if budgets:  # no budgets: no cuts
        check_budgets(budgets)
    if thinking_len < 0:
        raise ValueError(f"thinking length must be >= 0; got {thinking_len}")
    served: dict[int, list[int]] = {}
    for index, budget in enumerate(budgets):
        served.setdefault(min(budget, thinking_len), []).append(index)
    cuts = []
    for cut, indices in served.items():
        whole_closed = cut == thinking_len and finish_reason == "think_end"
        cuts.append(
            Cut(
                cut=cut,
                budget_indices=tuple(indices),
                inserted_ids=() if whole_closed else tuple(ellipsis_ids),
                delimiter_ids=tuple(delimiter_ids),
            )
        )
    return cuts


def trace_cuts(thinking_ids: Sequence[int], budgets: Sequence[int], markers: Markers) -> list[Cut]:
    """`cut_trace` for sampled thinking ids, reading how the thought ended from its last id."""
    reason = finish_reason(thinking_ids, markers.think_end_id, markers.eos_id)
    return cut_trace(len(thinking_ids), reason, budgets, markers.ellipsis_ids, markers.delimiter_ids)


def cut_of_budget(cuts: Sequence[Cut]) -> list[Cut]:
    """The cut serving each budget index, in budget order (length S)."""
    by_budget = {index: cut for cut in cuts for index in cut.budget_indices}
    if sorted(by_budget) != list(range(len(by_budget))):
        raise ValueError(f"cuts must serve budgets 0..S-1 exactly once; got {sorted(by_budget)}")
    return [by_budget[index] for index in range(len(by_budget))]


def split_by_budget(cuts: Sequence[Cut], per_cut: Sequence[Sequence[T]], num_summaries: int) -> list[list[T]]:
    """Per-cut samples → per-budget groups of A (`[S][A]`), in order.

    A collapsed cut serving k budgets carries `k * A` samples; they are split into consecutive chunks of A,
    one per budget (docs/method.md §2.4), so each budget's score is its own estimate of the full-trace score.
    """
    if len(per_cut) != len(cuts):
        raise ValueError(f"need one list of samples per cut ({len(cuts)}); got {len(per_cut)}")
    groups: dict[int, list[T]] = {}
    for cut, samples in zip(cuts, per_cut, strict=True):
        if len(samples) != cut.num_samples(num_summaries):
            raise ValueError(
                f"the cut at {cut.cut} serves {cut.budgets_served} budget(s) and needs "
                f"{cut.num_samples(num_summaries)} samples (A={num_summaries} each); got {len(samples)}"
            )
        for chunk, index in enumerate(cut.budget_indices):
            groups[index] = list(samples[chunk * num_summaries : (chunk + 1) * num_summaries])
    return [groups[index] for index in range(len(groups))]
