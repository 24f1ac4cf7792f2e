"""Straight-from-the-paper loop implementations of the advantages (PAPER.md §3), on plain Python floats.

Slow on purpose: one explicit loop per index, written to read like the formulas. They are the oracle the
vectorised code in `advantages.py` is tested against and the baseline `benchmarks/advantages.py` times.
"""

from __future__ import annotations

from collections.abc import Sequence

Nested3 = list[list[list[float]]]
Nested4 = list[list[list[list[float]]]]


def thinking_advantages_loop(
    scores: Sequence[Sequence[Sequence[float]]], probs: Sequence[float], baseline: str, discount: float = 2.0
) -> Nested3:
    """[B][G][S] scores → [B][G][S] advantages `Q - baseline`, one formula at a time."""
    num = len(probs)
    out: Nested3 = []
    for group in scores:
        size = len(group)
        returns = [[sum(probs[k] * trace[k] for k in range(j, num)) for j in range(num)] for trace in group]
        v2 = [sum(returns[g][j] for g in range(size)) / size if size > 1 else 0.0 for j in range(num)]
        rows = []
        for g, trace in enumerate(group):
            row = []
            for j in range(num):
                if j == 0:
                    v1 = 0.0
                else:
                    weights = [discount**k for k in range(j)]
                    prev = sum(w * trace[k] for k, w in enumerate(weights)) / sum(weights)
                    v1 = prev * sum(probs[k] for k in range(j, num))
                chosen = {
                    "brpo": (j * v1 + (num - j) * v2[j]) / num,
                    "v1": v1,
                    "v2": v2[j],
                    "none": 0.0,
                }[baseline]
                row.append(returns[g][j] - chosen)
            rows.append(row)
        out.append(rows)
    return out


def summary_advantages_loop(rewards: Sequence[Sequence[Sequence[Sequence[float]]]], mode: str) -> Nested4:
    """[B][G][S][A] rewards → advantages: sibling mean (`brpo`) or last-budget group mean (`grpo`)."""
    out: Nested4 = []
    for group in rewards:
        size = len(group)
        last = len(group[0]) - 1
        samples = len(group[0][0])
        pool = [group[g][last][a] for g in range(size) for a in range(samples)]
        group_mean = sum(pool) / len(pool) if len(pool) > 1 else 0.0
        rows = []
        for trace in group:
            budgets = []
            for j, siblings in enumerate(trace):
                if mode == "brpo":
                    mean = sum(siblings) / len(siblings) if len(siblings) > 1 else 0.0
                    budgets.append([r - mean for r in siblings])
                else:
                    budgets.append([r - group_mean if j == last else 0.0 for r in siblings])
            rows.append(budgets)
        out.append(rows)
    return out
