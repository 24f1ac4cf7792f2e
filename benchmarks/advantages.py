"""Vectorised advantages vs the loop implementation (docs/method.md §2.5–2.6) at B = 64, G = 8, S = 8, A = 4.

Both compute the BRPO thinking advantages and the decoupled summary advantages from the same random
0/1 rewards; the loop version is `anytime.brpo.reference` (plain Python, one formula at a time). Prints
per-call times, the speed-up and the largest difference between the two, measured in this run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from anytime.brpo import summary_advantages, thinking_advantages
from anytime.brpo.advantages import distinct_prefixes
from anytime.brpo.budgets import BudgetPrior
from anytime.brpo.reference import summary_advantages_loop, thinking_advantages_loop


def per_call(step: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Mean seconds per call over `repeats` calls (after one untimed warm-up call), and the last result."""
    result = step()
    started = time.perf_counter()
    for _ in range(repeats):
        result = step()
    return (time.perf_counter() - started) / repeats, result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 8, 8, 4], metavar=("B", "G", "S", "A"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, g, s, a = args.shape
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (b, g, s, a), generator=generator).float()
    probs = torch.tensor(BudgetPrior.spaced("linear", 1000 * s, s).probs)

    def vectorised() -> tuple[torch.Tensor, torch.Tensor]:
        summary = summary_advantages(rewards, "brpo", prefix_groups=distinct_prefixes(rewards))
        return thinking_advantages(rewards.mean(-1), probs, "brpo"), summary

    def loops() -> tuple[torch.Tensor, torch.Tensor]:
        nested = rewards.tolist()
        scores = [[[sum(r) / len(r) for r in trace] for trace in group] for group in nested]
        thinking = thinking_advantages_loop(scores, probs.tolist(), "brpo")
        return torch.tensor(thinking), torch.tensor(summary_advantages_loop(nested, "brpo"))

    vector_time, (think_v, summary_v) = per_call(vectorised, repeats=200)
    loop_time, (think_l, summary_l) = per_call(loops, repeats=3)
    diff = max((think_v - think_l).abs().max().item(), (summary_v - summary_l).abs().max().item())
    print(f"B={b}, G={g}, S={s}, A={a}, linear prior, brpo baseline, {args.threads} thread(s)")
    print(f"loop (anytime.brpo.reference): {loop_time * 1e3:9.2f} ms per call")
    print(f"vectorised:                    {vector_time * 1e3:9.3f} ms per call")
    print(f"vectorised speed-up: {loop_time / vector_time:.0f}x; max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
