"""The paper's Figure 3 statistics (docs/method.md §2.11) on hand-made returns — the masked variance ratios
Var(R − V)/Var(R) and correlations Corr(V, R) — and their problem bootstrap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anytime.brpo.variance import (
    ProblemReturns,
    bootstrap_study,
    correlations,
    masked_counts,
    summary_ratio,
    thinking_mask,
    variance_ratios,
)

# Budgets (4, 8), uniform prior, A = 1. Problem p0: trace a thinks 8 tokens, scores r = [0, 1]; trace b
# closes its thought after 3 tokens, r = [1, 1]. Problem p1: traces c, d think 8 tokens, r = [1, 1], [0, 0].
# R[g, j] = sum_{k>=j} 0.5 r[g, k]; V2 = the problem's mean R; V1 = r_0 * 0.5 at j = 1, 0 at j = 0;
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
    # Budget 4, all four traces: R = [.5, 1, 1, 0], Var = 0.6875 / 4 = 0.171875.
    #   V2 advantages [-.25, .25, .5, -.5]: Var 0.15625 → 10/11; V1 = 0 → 1.
    # Budget 8, traces a, c, d: R = [.5, .5, 0], Var = 1/18.
    #   V2 advantages [0, .25, -.25]: Var 1/24 → 3/4; V1 advantages [.5, 0, 0]: Var 1/18 → 1;
    #   BRPO advantages [.25, .125, -.125]: Var 7/288 → 7/16.
    assert variance_ratios(RETURNS, V2, MASK) == pytest.approx([10 / 11, 3 / 4])
    assert variance_ratios(RETURNS, V1, MASK) == pytest.approx([1.0, 1.0])
    assert variance_ratios(RETURNS, BRPO, MASK) == pytest.approx([10 / 11, 7 / 16])
    # Without the mask trace b (R = .5, V2 = .5) joins budget 8 and the V2 ratio changes: Var(R) = 3/64,
    # Var(R - V2) = 1/32 → 2/3. The mask is what makes it the paper's quantity.
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
    assert [e.value for e in study.ratios["brpo"]] == pytest.approx([10 / 11, 7 / 16])
    assert [e.traces for e in study.ratios["v2"]] == [20, 15]
    assert study.summary["v2"].value == pytest.approx(37 / 44) and study.summary["v2"].traces == 35
    for estimates in (*study.ratios.values(), list(study.summary.values())):
        for e in estimates:
            assert e.value is not None and e.low is not None and e.high is not None
            assert 0 <= e.low <= e.value + 1e-12 and e.value <= e.high + 1e-12
    again = bootstrap_study(_problems() * 5, resamples=300, seed=1)
    assert again == study  # the seed fixes the resamples


def test_bootstrap_of_identical_problems_has_no_width() -> None:
    study = bootstrap_study([_problems()[1]] * 4, resamples=50)
    estimate = study.ratios["v2"][0]  # p1 alone: R = [1, 0], V2 advantages [.5, -.5] → 1
    assert [estimate.value, estimate.low, estimate.high] == pytest.approx([1.0, 1.0, 1.0])


# The correlation and ratio by hand: 2 problems × 2 traces × 2 budgets (4, 8), uniform p = (.5, .5),
# discount 2, A = 1, every trace thinks 8 tokens (no mask).
# Scores r: p0 a [0, 1], b [1, 1]; p1 c [0, 0], d [1, 0].
# R[g, s] = sum_{k>=s} p_k r[g, k]:   a [.5, .5]   b [1, .5]   c [0, 0]   d [.5, 0]
# V2[s] = the problem's mean R:       p0 [.75, .5]             p1 [.25, 0]
# V1[g, 0] = 0; V1[g, 1] = (d^0 r[g, 0] / d^0) * p_1 = r[g, 0] / 2:  a 0, b .5, c 0, d .5
# BRPO[g, s] = (s V1 + (2 - s) V2) / 2: s = 0 → V2; s = 1 → a .25, b .5, c 0, d .25
# s = 0: R = [.5, 1, 0, .5], mean .5, Var(R) = (0 + .25 + .25 + 0)/4 = 1/8.
#   V2 = [.75, .75, .25, .25]: Var = 1/16, Cov = (.5·.25 + .5·.25)/4 = 1/16 → Corr = (1/16)/sqrt(1/8 · 1/16)
#   = 1/√2; R − V2 = [-.25, .25, -.25, .25], Var 1/16 → ratio 1/2. BRPO = V2: the same.
#   V1 = 0: Var(V1) = 0 → Corr undefined (None); R − V1 = R → ratio 1.
# s = 1: R = [.5, .5, 0, 0], mean .25, Var(R) = 1/16.
#   V2 = [.5, .5, 0, 0] = R → Corr 1, ratio 0.
#   V1 = [0, .5, 0, .5]: Var 1/16, Cov = (-.0625 + .0625 + .0625 - .0625)/4 = 0 → Corr 0;
#   R − V1 = [.5, 0, 0, -.5], Var = .5/4 = 1/8 → ratio 2.
#   BRPO = [.25, .5, 0, .25]: mean .25, Var = (0 + .0625 + .0625 + 0)/4 = 1/32, Cov = 1/32
#   → Corr = (1/32)/sqrt(1/16 · 1/32) = 1/√2; R − BRPO = [.25, 0, 0, -.25], Var 1/32 → ratio 1/2.
SCORES = [[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]]  # [problem][trace][budget]
HAND_R = [[0.5, 0.5], [1.0, 0.5], [0.0, 0.0], [0.5, 0.0]]
HAND = {
    "v2": [[0.75, 0.5], [0.75, 0.5], [0.25, 0.0], [0.25, 0.0]],
    "v1": [[0.0, 0.0], [0.0, 0.5], [0.0, 0.0], [0.0, 0.5]],
    "brpo": [[0.75, 0.25], [0.75, 0.5], [0.25, 0.0], [0.25, 0.25]],
}
ALL = [[True, True]] * 4
HAND_CORR = {"v2": [2**-0.5, 1.0], "v1": [None, 0.0], "brpo": [2**-0.5, 2**-0.5]}
HAND_RATIO = {"v2": [0.5, 0.0], "v1": [1.0, 2.0], "brpo": [0.5, 0.5]}


def test_correlation_and_ratio_equal_the_hand_computation() -> None:
    for name, baseline in HAND.items():
        assert variance_ratios(HAND_R, baseline, ALL) == pytest.approx(HAND_RATIO[name]), name
        assert correlations(HAND_R, baseline, ALL) == pytest.approx(HAND_CORR[name]), name


def test_the_learner_builds_the_hand_returns_and_baselines() -> None:
    torch = pytest.importorskip("torch")
    from anytime.brpo.budgets import BudgetPrior, PriorKind
    from anytime.brpo.config import BRPOConfig
    from services.learner.metrics import problem_returns

    config = BRPOConfig(b_max=8, num_budgets=2, discount=2.0)
    prior = BudgetPrior.spaced(PriorKind.UNIFORM, 8, 2)
    built = [problem_returns(torch.tensor(s)[..., None], [8, 8], config, prior) for s in SCORES]

    def flat(rows: list[list[float]]) -> list[float]:
        return [x for row in rows for x in row]

    assert flat([row for p in built for row in p.returns]) == pytest.approx(flat(HAND_R))
    for name, rows in HAND.items():
        assert flat([row for p in built for row in p.baselines[name]]) == pytest.approx(flat(rows)), name


def test_undefined_correlation_is_none_not_a_number() -> None:
    # V1 = 0 at the first budget: no spread, so no correlation (the authors' code would report 0).
    assert correlations(HAND_R, HAND["v1"], ALL)[0] is None
    # Equal returns: neither statistic is defined; a single masked row: neither either.
    same = [[0.25, 0.25]] * 3
    assert correlations(same, [[0.0, 0.1], [0.1, 0.2], [0.2, 0.3]], [[True, True]] * 3) == [None, None]
    one_left = [[True, True], [True, False], [True, False], [True, False]]
    assert correlations(HAND_R, HAND["v2"], one_left)[1] is None
    problems = [
        ProblemReturns(HAND_R[:2], {n: v[:2] for n, v in HAND.items()}, ALL[:2]),
        ProblemReturns(HAND_R[2:], {n: v[2:] for n, v in HAND.items()}, ALL[2:]),
    ]
    study = bootstrap_study(problems, resamples=50, seed=3)
    undefined = study.correlations["v1"][0]
    assert (undefined.value, undefined.low, undefined.high, undefined.traces) == (None, None, None, 4)


def test_bootstrap_gives_both_statistics_from_the_same_resamples() -> None:
    problems = [
        ProblemReturns(HAND_R[:2], {n: v[:2] for n, v in HAND.items()}, ALL[:2]),
        ProblemReturns(HAND_R[2:], {n: v[2:] for n, v in HAND.items()}, ALL[2:]),
    ]
    study = bootstrap_study(problems * 3, resamples=200, seed=5)
    for name in HAND:
        assert [e.value for e in study.correlations[name]] == pytest.approx(HAND_CORR[name])
        assert [e.value for e in study.ratios[name]] == pytest.approx(HAND_RATIO[name])
        assert len(study.replicates[name]) == 200
    corr = study.correlations["brpo"][1]
    assert corr.low is not None and corr.high is not None and -1 <= corr.low <= corr.high <= 1
    # V2 = R at the last budget in every problem: every resample's ratio is 0 and its correlation 1.
    assert [study.ratios["v2"][1].low, study.ratios["v2"][1].high] == pytest.approx([0.0, 0.0])
    assert [study.correlations["v2"][1].low, study.correlations["v2"][1].high] == pytest.approx([1.0, 1.0])
    # Paired differences use each resample's two ratios: V1 − BRPO at the last budget is 1.5 in the point.
    difference = study.ratio_difference("v1", "brpo", 1)
    assert difference.value == pytest.approx(1.5) and difference.traces == 12
    assert difference.low is not None and difference.high is not None
    assert difference.low <= 1.5 <= difference.high
    same = bootstrap_study([problems[0]] * 4, resamples=20).ratio_difference("v1", "brpo", 0)
    # p0 alone at the first budget: V2 (= BRPO) is one number, so both ratios are 1 in every resample.
    assert [same.value, same.low, same.high] == pytest.approx([0.0, 0.0, 0.0])


def test_module_is_torch_free() -> None:
    code = "import sys, anytime.brpo.variance; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
