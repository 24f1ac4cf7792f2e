"""Torch workers side by side on one machine: every core in every process (torch's default) vs the cores
divided among them (what the embedded stack sets, `anytime_cli.stack.torch_threads`).

The embedded stack runs three torch processes at once (rollout, eval, learn). This starts two of them as
they would run: a rollout (sampling 32 traces of 128 tokens with the tiny model) beside a learner-shaped
step (forward + backward over 32 × 200 tokens), first each at torch's default thread count, then each at
`torch_threads(cores, 2)`. Prints each job's seconds, alone and side by side, and the ratios, all measured
in this run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anytime_cli.stack import torch_threads

JOB = r"""
import sys, time, torch
from transformers import AutoModelForCausalLM
threads, kind, model = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if threads > 0:
    torch.set_num_threads(threads)
m = AutoModelForCausalLM.from_pretrained(model)
torch.manual_seed(0)
start = time.perf_counter()
if kind == "rollout":
    prompts = torch.randint(2, 100, (32, 30))
    with torch.no_grad():
        for _ in range(2):
            m.generate(prompts, max_new_tokens=128, min_new_tokens=128, do_sample=True, pad_token_id=1)
else:
    batch = torch.randint(2, 100, (32, 200))
    for _ in range(4):
        m(batch).logits.float().mean().backward()
print(f"{time.perf_counter() - start:.3f}")
"""


def run_jobs(model: Path, threads: int, kinds: list[str]) -> list[float]:
    """Start the jobs at once; each one's own seconds (model load excluded)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", JOB, str(threads), kind, str(model)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for kind in kinds
    ]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a benchmark job failed (exit {proc.returncode})")
        out.append(float(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    from anytime.tinymodel.build import build_tiny_model

    cores = os.cpu_count() or 1
    shared = torch_threads(cores, 2)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", seed=0)
        started = time.perf_counter()
        alone = {kind: run_jobs(model, 0, [kind])[0] for kind in ("rollout", "learn")}
        default = run_jobs(model, 0, ["rollout", "learn"])
        divided = run_jobs(model, shared, ["rollout", "learn"])
    print(f"{cores} cores; side by side: torch's default threads vs {shared} thread(s) each")
    print(f"{'job':<8} {'alone (default)':>16} {'beside, default':>16} {'beside, divided':>16} {'ratio':>7}")
    for i, kind in enumerate(("rollout", "learn")):
        ratio = default[i] / divided[i]
        print(f"{kind:<8} {alone[kind]:>15.2f}s {default[i]:>15.2f}s {divided[i]:>15.2f}s {ratio:>6.2f}x")
    print(
        f"both jobs done (the slower one): default {max(default):.2f} s, divided {max(divided):.2f} s "
        f"-> {max(default) / max(divided):.2f}x faster divided "
        f"(benchmark {time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
