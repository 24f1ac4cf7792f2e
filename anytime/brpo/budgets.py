"""Budget support and prior (docs/method.md §2.1): the S budgets `b_1 < … < b_S` and a probability over them.

Torch-free, so the API can validate a run's budgets before anything heavy is imported. Probabilities are
kept as given (after checking they sum to 1); the advantage code turns them into a tensor.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Probabilities from a config file are decimals; allow their rounding error, nothing more.
_SUM_TOLERANCE = 1e-6


def check_budgets(budgets: Sequence[int]) -> tuple[int, ...]:
    """The one check of a budget support: at least one budget, positive, strictly increasing
    (`b_1 < … < b_S`). Raises `ValueError` saying so; returns the budgets as a tuple."""
    if not budgets or budgets[0] <= 0 or any(a >= b for a, b in itertools.pairwise(budgets)):
        raise ValueError(
            "budgets must be positive and strictly increasing (b_1 < … < b_S), e.g. [64, 128]; "
            f"got {list(budgets)}"
        )
    return tuple(budgets)


def spaced_budgets(b_max: int, num_budgets: int) -> tuple[int, ...]:
    """The evenly spaced support `b_j = j * b_max / S`, j = 1..S (whole tokens when S divides b_max)."""
    return tuple(j * b_max // num_budgets for j in range(1, num_budgets + 1))


class PriorKind(StrEnum):
    """Named priors over evenly spaced budgets `b_j = j * b_max / S`."""

    UNIFORM = "uniform"  # p_j = 1/S: the area under the accuracy-vs-budget curve
    LINEAR = "linear"  # p_j ∝ b_j: later budgets weigh more
    BASE = "base"  # all mass on b_S: the standard objective (GRPO's)


class BudgetPrior(BaseModel):
    """Budgets `b_1 < … < b_S` (thinking tokens) and prior probabilities `p_1 … p_S` summing to 1.

    Build it with `BudgetPrior.spaced(kind, b_max, num_budgets)` or `BudgetPrior.explicit(budgets, probs)`;
    the constructor validates either way and says how to fix a bad value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: tuple[int, ...] = Field(min_length=1)
    probs: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> BudgetPrior:
        budgets, probs = self.budgets, self.probs
        if len(budgets) != len(probs):
            raise ValueError(
                f"give one probability per budget: {len(budgets)} budgets {list(budgets)} "
                f"but {len(probs)} probabilities {list(probs)}"
            )
        check_budgets(budgets)
        if any(not math.isfinite(p) or p < 0 for p in probs):
            raise ValueError(f"budget probabilities must be finite and >= 0; got {list(probs)}")
        total = math.fsum(probs)
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(
                f"budget probabilities must sum to 1; got {total:g} from {list(probs)} "
                "(divide each by their sum, or use a named prior: uniform, linear, base)"
            )
        return self

    @classmethod
    def spaced(
        cls, kind: PriorKind | str, b_max: int, num_budgets: int, context_length: int | None = None
    ) -> BudgetPrior:
        """Budgets `b_j = j * b_max / S` (j = 1..S) with a named prior; `b_max` must be divisible by S."""
        kind = PriorKind(kind)
        if num_budgets < 1:
            raise ValueError(f"the number of budgets must be >= 1; got {num_budgets}")
        if b_max <= 0 or b_max % num_budgets:
            nearest = max(1, round(b_max / num_budgets)) * num_budgets
            raise ValueError(
                "b_max must be a positive multiple of the number of budgets so budgets are whole tokens; "
                f"got b_max={b_max}, S={num_budgets}; try b_max={nearest}"
            )
        budgets = spaced_budgets(b_max, num_budgets)
        if kind is PriorKind.UNIFORM:
            probs = tuple(1.0 / num_budgets for _ in budgets)
        elif kind is PriorKind.LINEAR:
            total = sum(budgets)
            probs = tuple(b / total for b in budgets)
        else:
            probs = (*(0.0 for _ in budgets[:-1]), 1.0)
        prior = cls(budgets=budgets, probs=probs)
        return prior.check_context(context_length) if context_length is not None else prior

    @classmethod
    def explicit(
        cls, budgets: Sequence[int], probs: Sequence[float], context_length: int | None = None
    ) -> BudgetPrior:
        """Any strictly increasing budgets with probabilities that sum to 1."""
        prior = cls(budgets=tuple(budgets), probs=tuple(probs))
        return prior.check_context(context_length) if context_length is not None else prior

    def check_context(self, context_length: int, reserved: int = 0) -> BudgetPrior:
        """Refuse budgets that cannot fit: `b_S + reserved` (prompt, inserted, summary tokens) ≤ context."""
        if self.b_max + reserved > context_length:
            raise ValueError(
                f"the largest budget {self.b_max} plus {reserved} reserved tokens exceeds the model's "
                f"context of {context_length}; lower b_max to at most {context_length - reserved}"
            )
        return self

    @property
    def num_budgets(self) -> int:
        return len(self.budgets)

    @property
    def b_max(self) -> int:
        return self.budgets[-1]

    def expected(self, values: Sequence[float]) -> float:
        """`sum_j p_j * values[j]`: the anytime score when `values` are accuracies per budget."""
        if len(values) != len(self.probs):
            raise ValueError(f"need one value per budget ({len(self.probs)}); got {len(values)}")
        return math.fsum(p * v for p, v in zip(self.probs, values, strict=True))
