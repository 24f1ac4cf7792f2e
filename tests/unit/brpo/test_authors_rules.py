"""Our advantages equal the authors' rules on random traces (docs/method.md §2.3–2.6).

The reference below is written from the authors' definitions in their own layout (sail-sg/AnytimeReasoner,
`brpo.py`: `sample_partial_cot`, `compute_cot_advantage`, `compute_summary_advantage`), on plain Python
lists, without calling our advantage code: every trace's summaries flattened to S·A scores in cut order,
each tagged with the index of its distinct cut (`split_id`); collapsed budgets share one cut.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
import torch

from anytime.brpo.advantages import brpo_advantages
from anytime.brpo.config import PAPER_ARMS, BRPOConfig
from anytime.brpo.cuts import cut_trace
from tests.fixtures.rewards import prefix_groups, reward_tensor

B_MAX = 16
ELLIPSIS, DELIMITER = (7,), (8, 9)
AUTHORS_VARIANCE_REDUCTION = {"brpo": "brpo", "v1": "v1only", "v2": "v2only", "none": "none"}

Trace = tuple[int, str, list[list[float]]]  # (thinking length, finish reason, scores per distinct cut)


def authors_prior(name: str, num: int) -> list[float]:
    """The thinking prior over `b_j = j * b_max / S` from its definition (docs/method.md §2.1)."""
    weights = {
        "uniform": [1.0] * num,
        "linear": [j + 1.0 for j in range(num)],
        "base": [0.0] * (num - 1) + [1.0],
    }
    return [w / sum(weights[name]) for w in weights[name]]


def authors_partial_lens(length: int, budgets: list[int]) -> dict[int, int]:
    """`sample_partial_cot`: distinct cut length → how many budgets it serves, ascending."""
    partial: dict[int, int] = {}
    for plen in budgets:
        key = plen if length > plen else length
        partial[key] = partial.get(key, 0) + 1
    return dict(sorted(partial.items()))


def authors_advantages(
    traces: list[Trace],
    budgets: list[int],
    probs: list[float],
    group: int,
    num_summaries: int,
    variance_reduction: str,
    summary_method: str,
) -> tuple[list[list[float]], list[list[float]]]:
    """[B·G][S] thinking and [B·G][S·A] summary advantages, computed as the authors' code does."""
    num, a_count = len(budgets), num_summaries
    scores: list[list[float]] = []
    split_id: list[list[int]] = []
    for length, _, per_cut in traces:
        row, ids = [], []
        for i, count in enumerate(authors_partial_lens(length, budgets).values()):
            assert len(per_cut[i]) == count * a_count
            row += per_cut[i]
            ids += [i] * (count * a_count)
        scores.append(row)
        split_id.append(ids)

    # compute_cot_advantage
    budget_scores = [
        [sum(row[s * a_count : (s + 1) * a_count]) / a_count for s in range(num)] for row in scores
    ]
    thinking = []
    for idx in range(len(traces)):
        first = idx - idx % group
        members = range(first, first + group)
        row = []
        for s in range(num):
            cot_return = sum(budget_scores[idx][k] * probs[k] for k in range(s, num))
            avg_return = 0.0
            if group > 1:
                avg_return = (
                    sum(sum(budget_scores[h][k] * probs[k] for k in range(s, num)) for h in members) / group
                )
            last_cot_return = 0.0
            if s > 0:
                weights = [2.0**k for k in range(s)]
                prev = sum(budget_scores[idx][k] * weights[k] for k in range(s)) / sum(weights)
                last_cot_return = prev * sum(probs[s:])
            baseline = {
                "brpo": (s * last_cot_return + (num - s) * avg_return) / num,
                "v1only": last_cot_return,
                "v2only": avg_return,
                "none": 0.0,
            }[variance_reduction]
            row.append(cot_return - baseline)
        thinking.append(row)

    # compute_summary_advantage (with get_grpo_metrics_dict's per-prompt means)
    summary = []
    for id_0 in range(len(traces)):
        first = id_0 - id_0 % group
        row = []
        for id_1 in range(num * a_count):
            if a_count == 1:
                baseline = sum(scores[h][id_1] for h in range(first, first + group)) / group
            else:
                pool = [
                    x
                    for x, sid in zip(scores[id_0], split_id[id_0], strict=True)
                    if sid == split_id[id_0][id_1]
                ]
                baseline = sum(pool) / len(pool) if len(pool) > 1 else 0.0
            if summary_method == "grpo":
                adv = scores[id_0][id_1] - baseline if id_1 == num * a_count - 1 else 0.0
            else:
                adv = scores[id_0][id_1] - baseline
            row.append(adv)
        summary.append(row)
    return thinking, summary


def random_traces(
    rng: random.Random, problems: int, group: int, budgets: list[int], num_summaries: int
) -> list[Trace]:
    """Traces that end often on a budget or before it (collapsed cuts), some at EOS, some at b_max.

    A cut whose thinking prefix ends in EOS (the whole of an EOS-ended trace) scores 0 (docs/method.md §2.4).
    """
    traces = []
    for _ in range(problems * group):
        length = rng.choice([rng.randint(1, B_MAX), rng.choice(budgets), B_MAX])
        finish = rng.choice(["think_end", "eos", "length"] if length == B_MAX else ["think_end", "eos"])
        per_cut = []
        for cut, count in authors_partial_lens(length, budgets).items():
            eos_prefix = finish == "eos" and cut == length
            per_cut.append(
                [0.0 if eos_prefix else float(rng.random() < 0.5) for _ in range(count * num_summaries)]
            )
        traces.append((length, finish, per_cut))
    return traces


def ours(
    traces: list[Trace], budgets: list[int], group: int, config: BRPOConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Our pipeline: cuts → [B, G, S, A] rewards and prefix groups → `brpo_advantages`."""
    cuts = [cut_trace(length, finish, budgets, ELLIPSIS, DELIMITER) for length, finish, _ in traces]
    rows = [cuts[i : i + group] for i in range(0, len(cuts), group)]
    per_cut = [[t[2] for t in traces[i : i + group]] for i in range(0, len(traces), group)]
    rewards = reward_tensor(rows, per_cut, config.resolved_num_summaries)
    return brpo_advantages(rewards, config, prefix_groups(rows), config.budget_prior())


EXTRA_ARMS: Mapping[str, Mapping[str, object]] = {
    "brpo-a2-v1": {"num_summaries": 2, "baseline": "v1"},
    "brpo-a3-linear-none": {"num_summaries": 3, "prior": "linear", "baseline": "none"},
    "brpo-s2-a1": {"num_budgets": 2, "num_summaries": 1},
}
ARMS = {**PAPER_ARMS, **EXTRA_ARMS}


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("arm", sorted(ARMS))
def test_advantages_equal_the_authors_rules(arm: str, seed: int, group: int) -> None:
    config = BRPOConfig(b_max=B_MAX, group_size=group, **ARMS[arm])  # type: ignore[arg-type]
    num, a_count = config.resolved_num_budgets, config.resolved_num_summaries
    budgets = [B_MAX * (j + 1) // num for j in range(num)]
    prior = str(config.prior or ("base" if config.algorithm == "grpo" else "uniform"))
    rng = random.Random(f"{arm}:{seed}:{group}")
    traces = random_traces(rng, problems=3, group=group, budgets=budgets, num_summaries=a_count)

    thinking, summary = ours(traces, budgets, group, config)
    ref_thinking, ref_summary = authors_advantages(
        traces,
        budgets,
        authors_prior(prior, num),
        group,
        a_count,
        AUTHORS_VARIANCE_REDUCTION[config.resolved_baseline],
        "grpo" if config.resolved_summary_mode == "grpo" else "brpo",
    )
    expected_thinking = torch.tensor(ref_thinking).reshape(thinking.shape)
    expected_summary = torch.tensor(ref_summary).reshape(summary.shape)  # id_1 = s·A + a
    torch.testing.assert_close(thinking, expected_thinking, atol=1e-6, rtol=0)
    torch.testing.assert_close(summary, expected_summary, atol=1e-6, rtol=0)


def test_random_inputs_cover_collapsed_cuts_and_eos_traces() -> None:
    budgets = [4, 8, 12, 16]
    traces = [t for seed in range(4) for t in random_traces(random.Random(seed), 3, 4, budgets, 2)]
    assert any(len(per_cut) < len(budgets) for _, _, per_cut in traces)  # some budgets collapsed
    assert any(finish == "eos" for _, finish, _ in traces)
    assert any(finish == "length" for _, finish, _ in traces)
