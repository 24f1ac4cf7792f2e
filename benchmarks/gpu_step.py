"""One whole BRPO step on one GPU: generate (transformers engine), grade (the verifier), learn (the learner).

The issue's shape: a 1.5B-shaped Qwen2 (DeepSeek-R1-Distill-Qwen-1.5B's shape, untied, random weights: the
model of `benchmarks/learner_gpu.py`), 4 problems of the synthetic digit-chain task × G = 4 traces, b_max
2,048 with S = 4 budgets (512 … 2,048), A = 2 summaries of at most 128 tokens, the run's settings resolved
by `RunPlan.from_config` as the API resolves a run's. Every part is the project's own code path:

1. the bf16 matmul rate (`learner_gpu.matmul_rate`, 8192³ GEMMs): the peak MFU is read against;
2. the learner (`services.learner.Learner`: float32 master weights, bf16 autocast, gradient checkpointing,
   FlexAttention with the tree mask, packed trees in micro-batches padded to 8,192 tokens) takes one
   warm-up update on synthetic trees of the step's shape (`tests.fixtures.synthetic`), so FlexAttention
   compiles there and not inside the measured step;
3. the engine (`TransformersEngine`, shared-prefix summaries) serves a bf16 copy of the learner's weights
   after that update (`load_state_dict`, as its `load_weights` does, without the round trip through disk);
4. the measured step: `rollout` (`services.rollout.anytime_rollout`) → every summary graded by
   `Verifier.grade_many` (grader processes with math-verify, started before the step as a worker keeps
   them) → `Learner.step` (`build_step_batch`, `PPOUpdate`: old log-probs recomputed, 2 mini-batches).

Printed: the split (generate / grade / learn seconds), generated tokens/s, the learner's tokens/s and MFU =
6 · parameters · tree tokens / seconds / measured bf16 rate (as `learner_gpu.py` counts it: non-padding
tokens; the recompute of gradient checkpointing and attention FLOPs not counted) for its update pass and
its whole step, peak GPU memory (`torch.cuda.max_memory_allocated`; not measured on the CPU), and the
counts: trajectories (problems × G), summary requests (distinct cuts), summaries (trajectories × S × A),
verdicts by status.

Simplifications, stated: the policy is random, so thoughts run to b_max (a sampled `</think>` or EOS is
rare) and the tokenizer is the tiny model's (`anytime.tinymodel`; the model's other ids decode to
nothing): no summary holds a `\\boxed{}` answer, every verdict is `unparseable` and the step's grading is
the verifier's extraction path. A probe of known answers through the same verifier, two of which only
math-verify can decide (the other is a plain number, decided in this process), shows its grader processes
work. The step's submissions are built as the verify worker builds them (`services.verifier.worker`
imports Celery, which the GPU box lacks).

`--cpu-smoke` (and the fallback without CUDA): the tiny model the project builds, loaded by the learner's
and the engine's own `from_model_dir`, b_max 64, summaries of 16, on the CPU; the figures check plumbing
only. `--json PATH` writes every figure for `benchmarks/gpu_check.sh`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = 4
GROUP_SIZE = 4
NUM_BUDGETS = 4
NUM_SUMMARIES = 2


@dataclass(frozen=True)
class StepSize:
    """What one mode generates and how the learner batches it."""

    model: str  # what the run config names as its model
    b_max: int
    summary_max_tokens: int
    micro_batch_tokens: int
    # Seconds each part is expected to take on one H100 (printed as the budget; None on the CPU).
    budget_s: dict[str, float] | None = None


# Estimates for one H100 (not yet measured). Generation is decode-bound: ~30 ms per engine step at 16 rows
# (2,048 thinking steps, Python and kernel launches more than FLOPs), ~100 ms per summary step at 128 rows
# (sampling on the CPU over a 151,936-word vocabulary; 128 steps). FlexAttention compiles in the warm-up
# (less when learner_gpu.py ran first: same shapes, inductor's on-disk cache). The learner: 16 trees of
# ~3.2k tokens at ~15-25k tokens/s, old-log-prob pass included.
GPU_SIZE = StepSize(
    "a random 1.5B-shaped Qwen2",
    2048,
    128,
    8192,
    {"build": 15, "warm-up": 60, "generate": 85, "grade": 5, "learn": 10},
)
CPU_SIZE = StepSize("the tiny model", 64, 16, 1024)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU (plumbing only)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()  # before the heavy imports
    sys.path.insert(0, str(REPO))  # the repository's modules, tests.fixtures and the learner benchmark
    import torch

    from benchmarks.learner_gpu import matmul_rate

    cuda = torch.cuda.is_available() and not args.cpu_smoke
    size = GPU_SIZE if cuda else CPU_SIZE
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print("no CUDA (or --cpu-smoke): the tiny model on the CPU; the figures below check plumbing only")
        torch.set_num_threads(1)  # tiny kernels: more threads only contend
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cuda": cuda,
        "torch": torch.__version__,
    }
    if size.budget_s is not None:
        parts = ", ".join(f"{part} ~{seconds:.0f} s" for part, seconds in size.budget_s.items())
        print(f"budget (H100 estimate): {parts} = ~{sum(size.budget_s.values()):.0f} s")
        results["budget_s"] = sum(size.budget_s.values())
    peak = matmul_rate(device, 8192 if cuda else 256)
    print(f"device: {results['device']}; bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s (measured)")
    results["matmul_tflops"] = peak / 1e12

    def record(**figures: Any) -> None:  # what is known so far, should a later part fail
        results.update(figures)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    record()
    with tempfile.TemporaryDirectory(prefix="gpu-step-") as tmp:
        run_step(size, device, Path(tmp), peak, record)
    report(results, size)


def run_step(size: StepSize, device: Any, tmp: Path, peak: float, record: Any) -> None:
    """Build, warm up, then the measured step; every figure goes to `record` as soon as it is known."""
    import torch

    from anytime.model_facts import ModelFacts
    from anytime.prompting import prompt_ids
    from anytime.run_config import RunConfig
    from anytime.run_plan import RunPlan
    from anytime.summary_format import SummaryFormat
    from anytime.synth import TASKS
    from anytime.tinymodel.build import build_tiny_model
    from anytime.verification.settings import VerifierSettings
    from anytime.verification.verifier import Verifier
    from benchmarks.learner_gpu import mfu
    from services.rollout.anytime_rollout import rollout

    cuda = device.type == "cuda"
    plan = RunPlan.from_config(run_config(size, RunConfig))
    budgets = plan.rollout.budgets
    record(
        problems=PROBLEMS,
        group_size=GROUP_SIZE,
        budgets=list(budgets),
        num_summaries=plan.rollout.num_summaries,
        summary_max_tokens=plan.summary_max_tokens,
        micro_batch_tokens=size.micro_batch_tokens,
        attention="flex_attention" if cuda else "anytime_block_sparse_sdpa",
        precision="bf16" if cuda else "fp32",
    )
    print(
        f"step: {PROBLEMS} problems x G {GROUP_SIZE}, b_max {budgets[-1]}, S {len(budgets)} {list(budgets)}, "
        f"A {plan.rollout.num_summaries}, summaries <= {plan.summary_max_tokens} tokens"
    )
    began = time.perf_counter()
    folder = build_tiny_model(tmp / "tiny")  # the tokenizer (both modes) and the CPU smoke's model
    learner = build_learner(folder, plan, device)
    params = sum(p.numel() for p in learner.model.parameters())
    facts = ModelFacts.from_tokenizer(learner.tokenizer, SummaryFormat())
    problems = TASKS["digit-chain"].generate(PROBLEMS, seed=0, split="eval")  # distinct problems
    prompt_tokens = len(prompt_ids(learner.tokenizer, problems[0].problem))
    build_s = time.perf_counter() - began

    began = time.perf_counter()
    learner.step(*warm_up_data(plan, facts, prompt_tokens, len(learner.tokenizer)))
    _sync(device)
    warm_up_s = time.perf_counter() - began
    print(
        f"learner warm-up (synthetic trees of the step's shape{'; FlexAttention compiles' if cuda else ''}): "
        f"{warm_up_s:.1f} s"
    )
    began = time.perf_counter()
    engine = build_engine(folder, learner, facts, device)
    build_s += time.perf_counter() - began
    record(params=params, build_s=build_s, warm_up_s=warm_up_s)
    print(
        f"model: Qwen2, {params:,} parameters (random weights); learner: fp32 master weights, "
        f"{'bf16 autocast, FlexAttention' if cuda else 'block-sparse SDPA'}; engine: "
        f"{'bf16' if cuda else 'fp32'}, shared-prefix summaries, serving policy version "
        f"{engine.policy_version} ({build_s:.1f} s to build both)"
    )

    began = time.perf_counter()
    verifier = Verifier.from_settings(VerifierSettings())
    try:
        probe = verifier_probe(verifier)
        verifier_s = time.perf_counter() - began
        record(probe=probe, verifier_start_s=verifier_s)
        print(
            f"verifier: {probe['correct']}/{probe['total']} known answers correct, {probe['graded']} graded "
            f"by math-verify in its grader processes ({verifier_s:.1f} s with their start)"
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats()

        began = time.perf_counter()
        trajectories = rollout(engine, problems, plan.rollout, run_id="gpu-step", step=1, seed=1)
        _sync(device)
        generate_s = time.perf_counter() - began
        thinking = sum(len(t.thinking_ids) for t in trajectories)
        summary = sum(len(s.ids) for t in trajectories for c in t.cuts for s in c.summaries)
        record(
            generate_s=generate_s,
            trajectories=len(trajectories),
            summary_requests=sum(len(t.cuts) for t in trajectories),
            summaries=sum(len(c.summaries) for t in trajectories for c in t.cuts),
            thinking_tokens=thinking,
            summary_tokens=summary,
            generated_tokens_per_s=(thinking + summary) / generate_s,
        )

        began = time.perf_counter()
        verdicts, statuses = grade(verifier, trajectories, facts)
        grade_s = time.perf_counter() - began
        record(grade_s=grade_s, verdicts=sum(statuses.values()), statuses=statuses)
    finally:
        verifier.close()

    began = time.perf_counter()
    metrics = learner.step(trajectories, verdicts)
    _sync(device)
    learn_s = time.perf_counter() - began
    tokens, update_s = metrics["batch/tokens"], metrics["perf/update_s"]
    record(
        learn_s=learn_s,
        step_s=generate_s + grade_s + learn_s,
        learner_tokens=tokens,
        learner_micro_batches=metrics["batch/micro_batches"],
        learner_update_s=update_s,
        learner_update_tokens_per_s=tokens / update_s,
        learner_update_mfu=mfu(params, tokens / update_s, peak),
        learner_step_tokens_per_s=tokens / learn_s,
        learner_step_mfu=mfu(params, tokens / learn_s, peak),
        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    )


def report(f: dict[str, Any], size: StepSize) -> None:
    """The step's lines (`tests/integration/test_gpu_check_offline.py` reads them)."""
    statuses = ", ".join(f"{name} {count}" for name, count in sorted(f["statuses"].items()))
    print(
        f"counts: {f['trajectories']} trajectories, {f['summary_requests']} summary requests (distinct "
        f"cuts), {f['summaries']} summaries, {f['verdicts']} verdicts ({statuses})"
    )
    print(
        f"split: generate {f['generate_s']:.3f} s, grade {f['grade_s']:.3f} s, learn {f['learn_s']:.3f} s, "
        f"total {f['step_s']:.3f} s"
    )
    print(
        f"generated: {f['thinking_tokens']:,} thinking + {f['summary_tokens']:,} summary tokens, "
        f"{f['generated_tokens_per_s']:,.0f} tokens/s"
    )
    print(
        f"learner: {f['learner_tokens']:,.0f} tree tokens in {f['learner_micro_batches']:.0f} micro-batches "
        f"of {f['micro_batch_tokens']:,}; update pass {f['learner_update_s']:.2f} s "
        f"({f['learner_update_tokens_per_s']:,.0f} tokens/s, MFU {f['learner_update_mfu']:.1%}); whole "
        f"step {f['learn_s']:.2f} s ({f['learner_step_tokens_per_s']:,.0f} tokens/s, MFU "
        f"{f['learner_step_mfu']:.1%}) counting 6·P·T"
    )
    peak = f["peak_memory_gib"]
    print(
        f"peak GPU memory: {peak:.1f} GiB" if peak is not None else "peak GPU memory: not measured on the CPU"
    )
    if size.budget_s is not None:
        measured = {
            "build": f["build_s"],
            "warm-up": f["warm_up_s"],
            "generate": f["generate_s"],
            "grade": f["grade_s"] + f["verifier_start_s"],
            "learn": f["learn_s"],
        }
        pairs = [
            f"{part} {seconds:.0f} s (est. {size.budget_s[part]:.0f})" for part, seconds in measured.items()
        ]
        print("measured vs budget: " + ", ".join(pairs))


def run_config(size: StepSize, config_type: Any) -> Any:
    """The run this step is one step of, as a user would write it (`RunConfig`), resolved by its plan."""
    return config_type(
        model=size.model,
        dataset="synthetic digit-chain",
        preset="paper-1.5b",
        problems_per_step=PROBLEMS,
        method={
            "b_max": size.b_max,
            "num_budgets": NUM_BUDGETS,
            "num_summaries": NUM_SUMMARIES,
            "group_size": GROUP_SIZE,
            "summary_max_tokens": size.summary_max_tokens,
        },
        learner={"micro_batch_tokens": size.micro_batch_tokens, "pad_to_token_budget": True},
    )


def build_learner(folder: Path, plan: Any, device: Any) -> Any:
    """The learner: the 1.5B shape from its config on CUDA (random weights), the tiny model's folder on the
    CPU (the learner's own `from_model_dir`); the tokenizer is the tiny model's either way."""
    from transformers import AutoTokenizer

    from anytime.model_facts import pad_id_of
    from benchmarks.learner_gpu import GPU_SHAPE, build_model
    from services.learner.learner import Learner

    if device.type != "cuda":
        return Learner.from_model_dir(folder, plan.learner, device=device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(GPU_SHAPE, "flex_attention", device)
    return Learner(model, plan.learner, pad_id=pad_id_of(tokenizer), tokenizer=tokenizer, device=device)


def build_engine(folder: Path, learner: Any, facts: Any, device: Any) -> Any:
    """The engine serving the learner's current policy: its version, its weights copied in place as the
    engine's `load_weights` copies them; bf16 on CUDA, the tiny model's folder in float32 on the CPU."""
    import torch

    from benchmarks.learner_gpu import GPU_SHAPE, build_model
    from services.engines.transformers_engine import TransformersEngine

    version = learner.policy_version
    if device.type == "cuda":
        served = build_model(GPU_SHAPE, "sdpa", device).to(torch.bfloat16).eval()
        engine = TransformersEngine(served, learner.tokenizer, facts, policy_version=version)
    else:
        engine = TransformersEngine.from_model_dir(folder, policy_version=version)
    engine.model.load_state_dict(learner.model.state_dict())
    return engine


def warm_up_data(plan: Any, facts: Any, prompt_tokens: int, vocab_size: int) -> tuple[Any, Any]:
    """Synthetic trajectories of the step's shape (every thought to b_max), a verdict for every summary."""
    from tests.fixtures.synthetic import StepShape, synthetic_step

    markers = {*facts.ellipsis_ids, *facts.delimiter_ids, facts.think_end_id, facts.eos_id, facts.pad_id}
    shape = StepShape(
        problems=PROBLEMS,
        group_size=GROUP_SIZE,
        budgets=plan.rollout.budgets,
        num_summaries=plan.rollout.num_summaries,
        prompt_tokens=prompt_tokens,
        summary_tokens=plan.summary_max_tokens,
        finish_reasons=("length",),
    )
    return synthetic_step(
        shape,
        vocab=[i for i in range(vocab_size) if i not in markers],
        ellipsis_ids=facts.ellipsis_ids,
        delimiter_ids=facts.delimiter_ids,
        think_end_id=facts.think_end_id,
        eos_id=facts.eos_id,
        run_id="warm-up",
    )


def grade(
    verifier: Any, trajectories: list[Any], facts: Any
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Every summary's verdict record by trajectory id and summary id, and the count of each status.

    The submissions are the verify worker's (`services.verifier.worker.verify_trajectories`): the summary's
    response, the problem's answer, whether the kept prefix ends with `</think>` or with EOS."""
    from anytime.verification.verifier import Submission

    owners, submissions = [], []
    for trajectory in trajectories:
        for c, cut in enumerate(trajectory.cuts):
            closed = trajectory.prefix_ends_with(cut, facts.think_end_id)
            ended_in_eos = trajectory.prefix_ends_with(cut, facts.eos_id)
            for s, sample in enumerate(cut.summaries):
                owners.append((trajectory.id, trajectory.summary_id(c, s)))
                submissions.append(Submission(sample.response, trajectory.answer, closed, ended_in_eos))
    verdicts: dict[str, dict[str, Any]] = {t.id: {} for t in trajectories}
    statuses: dict[str, int] = {}
    for (trajectory_id, summary_id), verdict in zip(owners, verifier.grade_many(submissions), strict=True):
        verdicts[trajectory_id][summary_id] = verdict.record()
        statuses[verdict.status.value] = statuses.get(verdict.status.value, 0) + 1
    return verdicts, statuses


def verifier_probe(verifier: Any) -> dict[str, int]:
    """Known answers through the verifier: a plain number (decided in this process) and forms only math-verify
    decides (in the grader processes). All must be correct, or the box lacks what grading needs."""
    from anytime.verification.verifier import Submission

    cases = [("7", "7"), ("\\sqrt{4}", "2"), ("2^{10}", "1024")]
    opening = verifier.fmt.think_end + verifier.fmt.delimiter
    submissions = [Submission(f"{opening}\\boxed{{{answer}}}", truth) for answer, truth in cases]
    misses = verifier.stats.cache_misses
    verdicts = verifier.grade_many(submissions)
    graded = verifier.stats.cache_misses - misses
    wrong = [
        (case, v.status.value, v.message) for case, v in zip(cases, verdicts, strict=True) if not v.reward
    ]
    if wrong or graded == 0:
        raise SystemExit(
            f"the verifier got known answers wrong or graded none (is math-verify installed?): {wrong}"
        )
    return {"total": len(cases), "correct": len(cases), "graded": graded}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
