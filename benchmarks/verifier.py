"""Verdicts per second with and without the verdict cache, on real answers from ../shared/data (2 graders).

The workload mimics a rollout step: for each sampled problem, G·S·A responses (traces × budgets ×
summaries; 8 × 4 × 4 = 128 in the paper) whose boxed answers are drawn from the problem's gold (also
respelled: `$…$`, `\\dfrac`, extra spaces, which normalise to the same cache key), four wrong answers
(other problems' golds) and no box at all; a few responses carry an exponent tower that only a timeout
stops. Both runs grade the same responses in batches (one task's worth each) on a `Verifier` whose
grader processes are already up.

Answers that are plain numbers against plain-number golds are decided in the parent by the fast path
(`anytime.verification.plain_numbers`) in both runs; the rest reach the cache (second run) or a grader.
Prints verdicts/s, how many answers the fast path decided (`numbers`), how many reached a grader
(`graded`) with their grading latency (p50 / p99 / max), the hit rate among the answers left to the
cache, the statuses and the speed-up, all from this run; checks that both runs gave the same verdicts
and that no item took longer than timeout + 1 s.

Where the uncached time goes (2 cores, 5,120 responses): about 1,000 wrong answers where one side is an
expression, whose math-verify `simplify(gold - answer)` takes ~7 ms each, and one exponent tower that
holds a grader for the soft limit (0.8 × timeout). Round trips to the graders cost ~0.2 ms an item.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from anytime.verification import Submission, Verdict, Verifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "test"
CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"
TOWER = "2^{2^{2^{2^{2^{2^{2}}}}}}"


def load_golds(data: Path) -> list[Any]:
    golds: list[Any] = []
    for path in sorted(data.glob("*.json")):
        golds.extend(problem["answer"] for problem in json.loads(path.read_text()))
    if not golds:
        raise SystemExit(f"no problems under {data}; pass --data DIR (the folder of the test sets)")
    return golds


def first_answer(gold: Any) -> str:
    return str(gold[0] if isinstance(gold, list) else gold).strip().strip("$")


def respell(answer: str, rng: random.Random) -> str:
    """The same answer written differently (the verdict cache normalises these to one key)."""
    return rng.choice([f"${answer}$", f" {answer} ", answer.replace("\\frac", "\\dfrac"), answer])


def make_workload(
    golds: list[Any], problems: int, per_problem: int, hangs: int, seed: int
) -> list[Submission]:
    rng = random.Random(seed)
    picked = rng.sample(range(len(golds)), problems)
    submissions = []
    for index in picked:
        gold = golds[index]
        distractors = [first_answer(golds[rng.randrange(len(golds))]) for _ in range(4)]
        for _ in range(per_problem):
            roll = rng.random()
            if roll < 0.45:
                body = "\\boxed{" + first_answer(gold) + "}"
            elif roll < 0.6:
                body = "\\boxed{" + respell(first_answer(gold), rng) + "}"
            elif roll < 0.95:
                body = "\\boxed{" + rng.choice(distractors) + "}"
            else:
                body = "I could not finish."
            submissions.append(Submission(CUT + body, gold))
    for position in rng.sample(range(len(submissions)), hangs):
        submissions[position] = Submission(CUT + "\\boxed{" + TOWER + "}", submissions[position].ground_truth)
    return submissions


def run(
    submissions: list[Submission], batch: int, cache: bool, workers: int, timeout_s: float
) -> dict[str, Any]:
    with Verifier(timeout_s=timeout_s, workers=workers, cache_size=100_000 if cache else 0) as verifier:
        verifier.grade_many([Submission(CUT + "\\boxed{1}", "1")])  # grader processes up, then a fresh cache
        verifier.cache = type(verifier.cache)(verifier.cache.max_entries)
        verifier.stats = type(verifier.stats)()
        verdicts: list[Verdict] = []
        started = time.perf_counter()
        for start in range(0, len(submissions), batch):
            verdicts.extend(verifier.grade_many(submissions[start : start + batch]))
        seconds = time.perf_counter() - started
        stats = verifier.stats
    graded = sorted(v.seconds for v in verdicts if v.seconds > 0)
    return {
        "verdicts": verdicts,
        "rate": len(verdicts) / seconds,
        "seconds": seconds,
        "p50": statistics.median(graded) if graded else 0.0,
        "p99": graded[min(len(graded) - 1, int(0.99 * len(graded)))] if graded else 0.0,
        "max": graded[-1] if graded else 0.0,
        "hit_rate": stats.hit_rate,
        "plain_numbers": stats.plain_numbers,
        "graded": len(graded),
        "statuses": Counter(v.status.value for v in verdicts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="Folder of the test sets (JSON lists).")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--per-problem", type=int, default=128, help="G·S·A responses per problem.")
    parser.add_argument("--batch", type=int, default=512, help="Responses per grade_many call (one task).")
    parser.add_argument("--hangs", type=int, default=2, help="Responses with an exponent tower.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    submissions = make_workload(load_golds(args.data), args.problems, args.per_problem, args.hangs, args.seed)
    print(
        f"{len(submissions)} responses: {args.problems} problems × {args.per_problem} from {args.data}, "
        f"{args.hangs} exponent towers; {args.workers} grader processes, timeout {args.timeout:g} s, "
        f"batches of {args.batch}"
    )
    results = {
        "without cache": run(submissions, args.batch, False, args.workers, args.timeout),
        "with cache": run(submissions, args.batch, True, args.workers, args.timeout),
    }
    header = (
        f"{'verdicts/s':>11}{'numbers':>8}{'graded':>8}{'hit rate':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    )
    print(f"{'':14}{header}  statuses")
    for name, r in results.items():
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        print(
            f"{name:14}{r['rate']:>11.1f}{r['plain_numbers']:>8}{r['graded']:>8}{r['hit_rate']:>9.1%}"
            f"{r['p50'] * 1e3:>8.1f}"
            f"{r['p99'] * 1e3:>8.1f}{r['max'] * 1e3:>8.0f}  {statuses}"
        )
    plain, cached = results["without cache"], results["with cache"]
    same = [v.to_dict() for v in plain["verdicts"]] == [v.to_dict() for v in cached["verdicts"]]
    longest = max(plain["max"], cached["max"])
    within = longest <= args.timeout + 1
    print(f"cache speed-up: {cached['rate'] / plain['rate']:.1f}x; same verdicts in both runs: {_yes(same)}")
    print(f"longest item {longest:.2f} s; every item within timeout + 1 s: {_yes(within)}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


if __name__ == "__main__":
    main()
