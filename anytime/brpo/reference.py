"""Straight-from-the-paper loops for the advantages (docs/method.md §2.5–2.6), on plain Python floats.

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


def summary_advantages_loop(
    rewards: Sequence[Sequence[Sequence[Sequence[float]]]],
    mode: str,
    prefix_groups: Sequence[Sequence[Sequence[int]]] | None = None,
) -> Nested4:
    """[B][G][S][A] rewards → advantages, the authors' `compute_summary_advantage` (docs/method.md §2.6).

    A = 1: reward minus the mean over the G traces at the same budget. A > 1 (`brpo`): minus the mean of
    every summary from the same prompt (`prefix_groups[b][g][j]`, equal ids pool; None: none collapsed);
    `brpo_per_budget`: minus the mean of the budget's A. `grpo` (A = 1): only the last budget's summary.
    """
    if mode == "grpo" and any(len(s) != 1 for group in rewards for trace in group for s in trace):
        raise ValueError("summary mode 'grpo' needs A = 1")
    out: Nested4 = []
    for b, group in enumerate(rewards):
        size = len(group)
        rows = []
        for g, trace in enumerate(group):
            ids = prefix_groups[b][g] if prefix_groups is not None else list(range(len(trace)))
            budgets = []
            for j, siblings in enumerate(trace):
                row = []
                for r in siblings:
                    if len(siblings) == 1:
                        baseline = sum(group[h][j][0] for h in range(size)) / size
                    elif mode == "brpo_per_budget":
                        baseline = sum(siblings) / len(siblings)
                    else:
                        pool = [x for k, xs in enumerate(trace) if ids[k] == ids[j] for x in xs]
                        baseline = sum(pool) / len(pool)
                    trained = mode != "grpo" or j == len(trace) - 1
                    row.append(r - baseline if trained else 0.0)
                budgets.append(row)
            rows.append(budgets)
        out.append(rows)
    return out
