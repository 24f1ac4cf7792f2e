"""Pipelined vs sequential steps: the same run at `max_staleness` 0 and 1, on the whole embedded stack.

The rollout workers run the latency-model engine (a fixed time per decode step and per prefill token,
sleeping instead of computing: a stand-in for a GPU, so the two CPU cores do not blur the overlap); the
verifier and the learner are the real ones (math-verify, the tiny model's PPO step on the CPU). Both runs
go through the REST API, the control worker's driver and Celery, as a user's would.

From each run's training log (`pipeline/*` metrics, steps after the first, which loads engines and models):
- rollout: the k = 0 run's `pipeline/wait_s` (the driver waiting for the step's rollout and verdicts);
- learn: the k = 0 run's step wall time minus that wait (the learn task plus the commit);
- step: each run's `pipeline/step_wall_s` (commit to commit).
Goal (issue "Scale out"): k = 1 step ≤ 1.1 × max(rollout, learn); k = 0 is rollout + verify + learn.
The default decode step (0.016 s) makes the rollout about as long as the learn step on the 2-core machine:
the case where overlap has the most to hide and the bound is tightest (a longer rollout hides the learner
entirely; try `--decode-step-s 0.04`).

The learner gets `--learner-threads` torch threads (default 1 of the two cores): on a GPU box the learner and
the rollout hold different devices, and overlap only pays when what runs beside the learner does not take
its compute. With both cores (`--learner-threads 2`) the rollout's host work and the grader preempt the
learner's threads, which is this machine's contention, not the pipeline's.

Usage: python benchmarks/pipeline.py [--steps 6] [--decode-step-s 0.016] [--learner-threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from anytime.processes import free_port
from anytime.tinymodel.build import build_tiny_model
from anytime_cli.stack import EmbeddedStack

REPO = Path(__file__).resolve().parents[1]


def _synth(out: Path, n: int, seed: int) -> Path:
    subprocess.run(
        [sys.executable, "-m", "anytime_cli.main", "data", "synth", "--n", str(n), "--seed", str(seed),
         "--out", str(out)],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    return out


def _run(client: httpx.Client, config: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    created = client.post("/v1/runs", json=config)
    created.raise_for_status()
    run_id = created.json()["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"run {run_id} did not end within {timeout_s:.0f} s")
    if run["status"] != "succeeded":
        raise SystemExit(f"run {run_id} ended {run['status']}: {run.get('error')}")
    items: list[dict[str, Any]] = client.get(f"/v1/runs/{run_id}/metrics").json()["items"]
    return items


def _mean(runs: list[list[dict[str, Any]]], name: str) -> float:
    """The mean of a metric over every run's steps after the first."""
    return statistics.fmean(float(item["metrics"][name]) for items in runs for item in items[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6, help="steps per run (the first is not timed)")
    parser.add_argument("--problems", type=int, default=4, help="problems per step")
    parser.add_argument(
        "--decode-step-s", type=float, default=0.016, help="latency model: seconds per decode step"
    )
    parser.add_argument(
        "--prefill-token-s", type=float, default=0.00002, help="latency model: per prompt token"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs per k, alternated (k=0, k=1, k=0, …) so drift hits both"
    )
    parser.add_argument(
        "--learner-threads",
        type=int,
        default=1,
        help="torch threads of the learn worker (ANYTIME_LEARNER_THREADS)",
    )
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="anytime-pipeline-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "tiny")
        data = _synth(work / "train.jsonl", 200, 1)
        os.environ.update(
            {
                "ANYTIME_ROLLOUT_ENGINE": "latency",
                "ANYTIME_ROLLOUT_LATENCY_DECODE_STEP_S": str(args.decode_step_s),
                "ANYTIME_ROLLOUT_LATENCY_PREFILL_TOKEN_S": str(args.prefill_token_s),
                "ANYTIME_LEARNER_THREADS": str(args.learner_threads),
            }
        )
        stack = EmbeddedStack(
            work / "home", api_port=free_port(), mlflow_port=free_port(), ui=False, data_roots=(work,)
        )
        base = {
            "model": str(model),
            "dataset": str(data),
            "steps": args.steps,
            "problems_per_step": args.problems,
            "b_max": 64,
            "group_size": 4,
            "num_summaries": 2,
            "summary_max_tokens": 16,
            "lr": 1e-4,
        }
        results: dict[int, list[list[dict[str, Any]]]] = {0: [], 1: []}
        with stack.running():
            headers = {"Authorization": f"Bearer {stack.api_key()}"}
            with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
                for k in [0, 1] * args.repeats:
                    config = {**base, "name": f"pipeline k={k}", "max_staleness": k}
                    results[k].append(_run(client, config, args.timeout_s))

    rollout = _mean(results[0], "pipeline/wait_s")
    sequential = _mean(results[0], "pipeline/step_wall_s")
    learn = sequential - rollout
    pipelined = _mean(results[1], "pipeline/step_wall_s")
    bound = max(rollout, learn)
    report = {
        "rollout_and_verify_s": round(rollout, 3),
        "learn_s": round(learn, 3),
        "step_k0_s": round(sequential, 3),
        "step_k1_s": round(pipelined, 3),
        "k1_over_max": round(pipelined / bound, 3),
        "k0_over_k1": round(sequential / pipelined, 3),
        "k1_policy_lag": _mean(results[1], "pipeline/policy_lag"),
        # The learner's own step (the learn task's compute): slower at k=1 when the overlapped rollout and
        # grading compete with it for the same CPU cores.
        "learner_step_k0_s": round(_mean(results[0], "perf/step_s"), 3),
        "learner_step_k1_s": round(_mean(results[1], "perf/step_s"), 3),
        "learner_threads": args.learner_threads,
        "goal_met": pipelined <= 1.1 * bound,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"steps timed: {args.repeats} runs × {args.steps - 1} per k "
        f"(latency model: {args.decode_step_s} s per decode step; "
        f"learner: {args.learner_threads} torch thread(s))"
    )
    print(f"rollout + verify (k=0 wait)   {rollout:7.2f} s")
    print(f"learn + commit (k=0)          {learn:7.2f} s")
    print(f"step, k=0 (sequential)        {sequential:7.2f} s")
    print(f"step, k=1 (pipelined)         {pipelined:7.2f} s   policy lag {report['k1_policy_lag']:.2f}")
    print(
        f"k=1 step / max(rollout, learn) = {report['k1_over_max']:.2f}  (goal <= 1.10: "
        f"{'met' if report['goal_met'] else 'NOT met'})"
    )
    print(f"speed-up of pipelining: {report['k0_over_k1']:.2f}x")
    print(
        f"learner's own step: k=0 {report['learner_step_k0_s']:.2f} s, "
        f"k=1 {report['learner_step_k1_s']:.2f} s "
        "(slower at k=1 = what the overlapped work takes from it)"
    )


if __name__ == "__main__":
    main()
