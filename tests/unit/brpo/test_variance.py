"""The paper's masked variance ratios (docs/method.md §2.11) on hand-made returns, and their bootstrap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anytime.brpo.variance import (
    ProblemReturns,
    bootstrap_study,
    masked_counts,
    summary_ratio,
    thinking_mask,
    variance_ratios,
)

# Budgets (4, 8), uniform prior, A = 1. Problem p0: trace a thinks 8 tokens, R = [0, 1]; trace b closes
# its thought after 3 tokens, R = [1, 1]. Problem p1: traces c, d think 8 tokens, R = [1, 1] and [0, 0].
# Q[g, j] = sum_{k>=j} 0.5 R[g, k]; V2 = the problem's mean Q; V1 = (R_0) * 0.5 at j = 1, 0 at j = 0;
# BRPO = V2 at j = 0 and (V1 + V2) / 2 at j = 1.
BUDGETS = (4, 8)
LENGTHS = (8, 3, 8, 8)
RETURNS = [[0.5, 0.5], [1.0, 0.5], [1.0, 0.5], [0.0, 0.0]]
V2 = [[0.75, 0.5], [0.75, 0.5], [0.5, 0.25], [0.5, 0.25]]
V1 = [[0.0, 0.0], [0.0, 0.5], [0.0, 0.5], [0.0, 0.0]]
BRPO = [[0.75, 0.25], [0.75, 0.5], [0.5, 0.375], [0.5, 0.125]]
# Trace b ended at 3 <= b_1 = 4: it has no thinking segment at budget 8 and is left out there.
MASK = [[True, True], [True, False], [True, True], [True, True]]


def test_mask_keeps_traces_that_still_think_when_the_segment_starts() -> None:
    assert [thinking_mask(n, BUDGETS) for n in LENGTHS] == MASK
    assert thinking_mask(4, BUDGETS) == [True, False]  # ended exactly at b_1: segment 2 is empty
    assert thinking_mask(5, BUDGETS) == [True, True]
    assert thinking_mask(0, BUDGETS) == [True, False]  # the first budget always counts (the authors')
    assert masked_counts(MASK) == [4, 3]


def test_masked_ratios_equal_the_hand_computation() -> None:
    # Budget 4, all four traces: Q = [.5, 1, 1, 0], Var = 0.6875 / 4 = 0.171875.
    #   V2 advantages [-.25, .25, .5, -.5]: Var 0.15625 → 10/11; V1 = 0 → 1.
    # Budget 8, traces a, c, d: Q = [.5, .5, 0], Var = 1/18.
    #   V2 advantages [0, .25, -.25]: Var 1/24 → 3/4; V1 advantages [.5, 0, 0]: Var 1/18 → 1;
    #   BRPO advantages [.25, .125, -.125]: Var 7/288 → 7/16.
    assert variance_ratios(RETURNS, V2, MASK) == pytest.approx([10 / 11, 3 / 4])
    assert variance_ratios(RETURNS, V1, MASK) == pytest.approx([1.0, 1.0])
    assert variance_ratios(RETURNS, BRPO, MASK) == pytest.approx([10 / 11, 7 / 16])
    # Without the mask trace b (Q = .5, V2 = .5) joins budget 8 and the V2 ratio changes: Var(Q) = 3/64,
    # Var(Q - V2) = 1/32 → 2/3. The mask is what makes it the paper's quantity.
    everything = [[True, True]] * 4
    assert variance_ratios(RETURNS, V2, everything)[1] == pytest.approx(2 / 3)


def test_summary_is_the_mask_count_weighted_mean() -> None:
    counts = masked_counts(MASK)
    assert summary_ratio(variance_ratios(RETURNS, V2, MASK), counts) == pytest.approx(37 / 44)
    assert summary_ratio(variance_ratios(RETURNS, BRPO, MASK), counts) == pytest.approx(871 / 1232)
    assert summary_ratio([None, 0.5], [4, 3]) == pytest.approx(0.5)  # undefined budgets drop out
    assert summary_ratio([None, None], [4, 3]) is None


def test_undefined_where_fewer_than_two_traces_or_no_spread() -> None:
    one_left = [[True, True], [True, False], [True, False], [True, False]]
    assert variance_ratios(RETURNS, V2, one_left)[1] is None
    same = [[0.25, 0.25]] * 3
    assert variance_ratios(same, [[0.0, 0.0]] * 3, [[True, True]] * 3) == [None, None]
    with pytest.raises(ValueError, match="rows"):
        variance_ratios(RETURNS, V2[:3], MASK)


def _problems() -> list[ProblemReturns]:
    def of(rows: slice) -> ProblemReturns:
        baselines = {"brpo": BRPO[rows], "v1": V1[rows], "v2": V2[rows]}
        return ProblemReturns(RETURNS[rows], baselines, MASK[rows])

    return [of(slice(0, 2)), of(slice(2, 4))]


def test_bootstrap_point_is_the_pooled_ratio_and_intervals_contain_it() -> None:
    study = bootstrap_study(_problems() * 5, resamples=300, seed=1)
    assert [e.ratio for e in study.per_budget["brpo"]] == pytest.approx([10 / 11, 7 / 16])
    assert [e.traces for e in study.per_budget["v2"]] == [20, 15]
    assert study.summary["v2"].ratio == pytest.approx(37 / 44) and study.summary["v2"].traces == 35
    for estimates in (*study.per_budget.values(), list(study.summary.values())):
        for e in estimates:
            assert e.ratio is not None and e.low is not None and e.high is not None
            assert 0 <= e.low <= e.ratio + 1e-12 and e.ratio <= e.high + 1e-12
    again = bootstrap_study(_problems() * 5, resamples=300, seed=1)
    assert again == study  # the seed fixes the resamples


def test_bootstrap_of_identical_problems_has_no_width() -> None:
    study = bootstrap_study([_problems()[1]] * 4, resamples=50)
    estimate = study.per_budget["v2"][0]  # p1 alone: Q = [1, 0], V2 advantages [.5, -.5] → 1
    assert [estimate.ratio, estimate.low, estimate.high] == pytest.approx([1.0, 1.0, 1.0])


def test_module_is_torch_free() -> None:
    code = "import sys, anytime.brpo.variance; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
