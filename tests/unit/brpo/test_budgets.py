"""Budget support and priors (docs/method.md §2.1): named priors, explicit lists, errors that say the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from anytime.brpo.budgets import BudgetPrior, PriorKind, check_budgets


def test_named_priors_over_evenly_spaced_budgets() -> None:
    uniform = BudgetPrior.spaced("uniform", 8000, 4)
    assert uniform.budgets == (2000, 4000, 6000, 8000)
    assert uniform.probs == (0.25, 0.25, 0.25, 0.25)
    linear = BudgetPrior.spaced(PriorKind.LINEAR, 8000, 4)
    assert linear.probs == pytest.approx((0.1, 0.2, 0.3, 0.4))
    base = BudgetPrior.spaced("base", 8000, 4)
    assert base.probs == (0.0, 0.0, 0.0, 1.0)
    assert BudgetPrior.spaced("base", 8000, 1).budgets == (8000,)
    assert uniform.num_budgets == 4 and uniform.b_max == 8000


def test_anytime_score_is_the_prior_weighted_accuracy() -> None:
    prior = BudgetPrior.spaced("uniform", 8000, 4)
    assert prior.expected([0.2, 0.4, 0.6, 0.8]) == pytest.approx(0.5)
    assert BudgetPrior.spaced("base", 8000, 4).expected([0.2, 0.4, 0.6, 0.8]) == pytest.approx(0.8)


def test_explicit_prior() -> None:
    prior = BudgetPrior.explicit([100, 300, 1000], [0.5, 0.3, 0.2])
    assert prior.budgets == (100, 300, 1000) and prior.probs == (0.5, 0.3, 0.2)


@pytest.mark.parametrize(
    ("budgets", "probs", "message"),
    [
        ([100, 200], [0.5, 0.4], "must sum to 1; got 0.9"),
        ([200, 100], [0.5, 0.5], "strictly increasing"),
        ([100, 100], [0.5, 0.5], "strictly increasing"),
        ([0, 100], [0.5, 0.5], "positive"),
        ([100, 200], [1.5, -0.5], ">= 0"),
        ([100, 200, 300], [0.5, 0.5], "one probability per budget"),
    ],
)
def test_bad_priors_are_refused_with_a_fix(budgets: list[int], probs: list[float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BudgetPrior.explicit(budgets, probs)


def test_sum_message_says_how_to_fix() -> None:
    with pytest.raises(ValidationError, match="divide each by their sum"):
        BudgetPrior.explicit([1, 2], [0.2, 0.2])


def test_budgets_must_fit_the_context() -> None:
    with pytest.raises(ValueError, match="exceeds the model's context of 4096; lower b_max to at most 3968"):
        BudgetPrior.spaced("uniform", 8000, 4).check_context(4096, reserved=128)
    with pytest.raises(ValueError, match="context"):
        BudgetPrior.spaced("uniform", 8000, 4, context_length=4000)
    assert BudgetPrior.spaced("uniform", 8000, 4, context_length=8192).b_max == 8000


def test_spacing_needs_whole_token_budgets_and_a_known_kind() -> None:
    with pytest.raises(ValueError, match="try b_max=8001"):
        BudgetPrior.spaced("uniform", 8002, 3)
    with pytest.raises(ValueError, match="'cosine' is not a valid PriorKind"):
        BudgetPrior.spaced("cosine", 8000, 4)
    with pytest.raises(ValueError, match=">= 1"):
        BudgetPrior.spaced("uniform", 8000, 0)


@pytest.mark.parametrize("budgets", [[], [0, 8], [8, 8], [16, 8], [-1]])
def test_a_budget_support_is_checked_in_one_place(budgets: list[int]) -> None:
    with pytest.raises(ValueError, match="positive and strictly increasing"):
        check_budgets(budgets)
    assert check_budgets([8, 16, 32]) == (8, 16, 32)
