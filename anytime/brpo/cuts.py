"""Cutting a thinking trace at budgets and building summary prompts at the token level (DESIGN.md §2.1).

Torch-free: pure lists of token ids, so the rollout, the verifier and the learner all share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["think_end", "eos", "length"]


@dataclass(frozen=True)
class Cut:
    """One distinct cut of a trace: `length` thinking tokens kept, serving `num_budgets` budgets."""

    length: int
    budget_indices: tuple[int, ...]
    inserted_ids: tuple[int, ...]
    delimiter_ids: tuple[int, ...]

    @property
    def num_budgets(self) -> int:
        return len(self.budget_indices)

    def summary_prompt(self, prompt_ids: Sequence[int], thinking_ids: Sequence[int]) -> list[int]:
        """`prompt + thinking[:length] + inserted + delimiter`; the sampled ids are used as they are."""
        return [*prompt_ids, *thinking_ids[: self.length], *self.inserted_ids, *self.delimiter_ids]

    @property
    def thought_closed_in_prefix(self) -> bool:
        """True when the kept thinking itself ends the thought (nothing inserted)."""
        return not self.inserted_ids


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
    if any(b <= 0 for b in budgets) or any(a >= b for a, b in zip(budgets, budgets[1:], strict=False)):
        raise ValueError(f"budgets must be positive and strictly increasing; got {list(budgets)}")
    if thinking_len < 0:
        raise ValueError(f"thinking length must be >= 0; got {thinking_len}")
    served: dict[int, list[int]] = {}
    for index, budget in enumerate(budgets):
        served.setdefault(min(budget, thinking_len), []).append(index)
    cuts = []
    for length, indices in served.items():
        whole_closed = length == thinking_len and finish_reason == "think_end"
        cuts.append(
            Cut(
                length=length,
                budget_indices=tuple(indices),
                inserted_ids=() if whole_closed else tuple(ellipsis_ids),
                delimiter_ids=tuple(delimiter_ids),
            )
        )
    return cuts
