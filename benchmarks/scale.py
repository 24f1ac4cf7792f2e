"""Rollout throughput with 1, 2 and 4 rollout workers, on the latency-model engine, in one run.

The engine (`services.engines.latency_engine`) stands in for a GPU: it computes nothing and sleeps a fixed
time per decode step of its batch (up to `--max-rows` rows) and per prefilled prompt token, so the 2 shared
CPU cores do not blur the result; what is measured is the platform around it: the Celery queue, the
workers, the anytime rollout's own work and the trajectories' way into Redis.

For each W: a real redis-server (started once), W rollout workers (`celery -A services.rollout.worker:app
worker -Q rollout -P solo`, engine `latency`), warm-up tasks until every worker has run one (the engine
starts on a worker's first task), then `--repeats` steps, each one step's rollout split into shards of whole
problem groups (W × `--shards-per-worker`), sent at once; a step's clock runs from the first send to the
last result. Tokens/s counts the generated tokens (thinking + summaries) of the stored trajectories. The
goal is judged on the fastest repeat of each (as `timeit` does: on a shared machine, other work only ever
slows a repeat down); the median's speed-up is shown beside it, and the workers' CPU seconds per repeat
show how much host work is left for the cores to share. Goal: 2 workers >= 1.8x, 4 workers >= 3.4x the
tokens/s of one.

Usage: python benchmarks/scale.py [--problems N] [--group-size G] [--budgets 64,128,192,256] [--json]
(the tokenizer: `--model DIR`, else build/demo/tiny-sft when it exists, else one trained here in seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anytime.contracts.rollout import GENERATE_TASK, RolloutConfig, RolloutJob, RolloutResult
from anytime.logging import configure_logging
from anytime.problems import Problem
from anytime.synth import TASKS, get_task
from anytime.trajectory import Trajectory
from services.rollout.settings import RolloutSettings

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "build" / "demo" / "tiny-sft"
GOALS = {2: 1.8, 4: 3.4}
RUN_ID = "scale"
WARMUP_STEP, FIRST_MEASURED_STEP = 0, 1
WORKER_START_S = 120.0
TASK_TIMEOUT_S = 600.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Measurement:
    """One worker count's repeats of a step: wall seconds, generated tokens and the workers' CPU seconds."""

    workers: int
    shards: int
    seconds: list[float]
    tokens: list[int]
    worker_cpu_s: list[float]

    @property
    def rates(self) -> list[float]:
        return [t / s for t, s in zip(self.tokens, self.seconds, strict=True)]

    @property
    def best_rate(self) -> float:
        """Tokens/s of the fastest repeat: work of others on the machine only ever slows a repeat down."""
        return max(self.rates)

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def tokenizer_folder(out: Path) -> Path:
    """A folder with the tiny model's kind of tokenizer and a placeholder config (the engine loads no
    weights): trained on a few hundred synthetic problems, without torch."""
    from anytime.summary_format import SummaryFormat
    from anytime.tinymodel.tokenizer import build_tokenizer

    fmt = SummaryFormat()
    corpus = [fmt.ellipsis + fmt.delimiter]
    for task in TASKS.values():
        for p in task.generate(200, seed=0):
            corpus += [p.problem, f"{p.trace}\n{fmt.think_end}{fmt.delimiter}\\boxed{{{p.answer}}}"]
    whole = tuple(dict.fromkeys(t for task in TASKS.values() for t in task.whole_tokens))
    build_tokenizer(corpus, 384, fmt, whole).save_pretrained(out)
    (out / "config.json").write_text("{}\n")
    return out


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence; its URL."""
    from anytime.processes import (
        LOOPBACK,
        free_port,
        redis_answers,
        redis_server_argv,
        spawn,
        stop,
        wait_ready,
    )

    port = free_port()
    log_path = workdir / "redis.log"
    with log_path.open("wb") as log:
        proc = spawn(redis_server_argv(port, workdir, durable=False), log)
    try:
        wait_ready(proc, "redis-server", lambda: redis_answers(port, proc.pid), 30.0, log_path)
        yield f"redis://{LOOPBACK}:{port}/0"
    finally:
        stop(proc, "redis-server", STOP_GRACE_S)


@contextlib.contextmanager
def rollout_workers(count: int, env: dict[str, str], workdir: Path) -> Iterator[dict[str, int]]:
    """`count` solo-pool rollout workers; their node names and process ids once all answer a ping."""
    from anytime.celery_app import make_celery
    from anytime.processes import celery_worker_argv, log_tail, spawn, stop

    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    names = [f"rollout{i}@scale" for i in range(count)]
    app = make_celery(env["ANYTIME_REDIS_URL"], name="scale-bench")
    try:
        for name in names:
            log_path = workdir / f"{name.split('@')[0]}-of-{count}.log"
            argv = celery_worker_argv(
                "services.rollout.worker:app", "rollout", ["-P", "solo"], node=name, heartbeat=False
            )
            with log_path.open("ab") as log:
                procs.append((spawn(argv, log, cwd=REPO, env=env), log_path))
        deadline = time.monotonic() + WORKER_START_S
        answered: set[str] = set()
        while not set(names) <= answered:
            for proc, log_path in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a rollout worker exited while starting:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rollout workers not answering after {WORKER_START_S:.0f} s")
            answered |= {n for reply in app.control.ping(timeout=1.0) or [] for n in reply}
        yield {name: proc.pid for name, (proc, _) in zip(names, procs, strict=True)}
    finally:
        app.close()
        for proc, _ in procs:
            stop(proc, "rollout worker", STOP_GRACE_S, group=True)


def shards(problems: Sequence[Problem], count: int) -> list[list[Problem]]:
    """`count` shards of whole problems (a problem's G traces stay together), sizes differing by <= 1."""
    return [list(problems[i::count]) for i in range(count)]


def job(problems: list[Problem], config: RolloutConfig, model: Path, step: int, seed: int) -> dict[str, Any]:
    rollout_job = RolloutJob(
        run_id=RUN_ID,
        step=step,
        policy_version=0,
        model_dir=model,
        problems=problems,
        config=config,
        seed=seed,
    )
    return rollout_job.model_dump(mode="json")


def warm_up(app: Any, names: Sequence[str], config: RolloutConfig, model: Path) -> None:
    """Until every worker has run a task (and so started its engine): one small task per worker at a time."""
    problem = get_task("digit-chain").generate(1, seed=99)[0].model_copy(update={"id": "warm-up"})
    for _ in range(10):
        sent = [
            app.send_task(GENERATE_TASK, kwargs=job([problem], config, model, WARMUP_STEP, 0)) for _ in names
        ]
        for result in sent:
            result.get(timeout=TASK_TIMEOUT_S)
        stats = app.control.inspect(destination=list(names), timeout=2.0).stats() or {}
        ran = {name for name, s in stats.items() if s.get("total", {}).get(GENERATE_TASK, 0) > 0}
        if set(names) <= ran:
            return
    raise RuntimeError(f"workers {sorted(set(names) - ran)} took no warm-up task in 10 rounds")


def measure(
    workers: int,
    problems: list[Problem],
    config: RolloutConfig,
    model: Path,
    env: dict[str, str],
    workdir: Path,
    shards_per_worker: int,
    repeats: int,
) -> Measurement:
    """Start `workers` workers, warm them up, then time `repeats` steps (one step's shards sent at once)."""
    import redis

    from anytime.celery_app import make_celery
    from anytime.trajectory_store import TrajectoryStore

    redis_url = env["ANYTIME_REDIS_URL"]
    client = redis.Redis.from_url(redis_url)
    store = TrajectoryStore(client)
    app = make_celery(redis_url, name="scale-bench")
    parts = shards(problems, workers * shards_per_worker)
    seconds: list[float] = []
    tokens: list[int] = []
    cpu: list[float] = []
    try:
        with rollout_workers(workers, env, workdir) as pids:
            warm_up(app, list(pids), config, model)
            for repeat in range(repeats):
                step = FIRST_MEASURED_STEP + repeat
                jobs = [job(part, config, model, step, seed=7 + i) for i, part in enumerate(parts)]
                cpu_before = sum(map(process_cpu_s, pids.values()))
                started = time.perf_counter()
                sent = [app.send_task(GENERATE_TASK, kwargs=kwargs) for kwargs in jobs]
                results = [RolloutResult.model_validate(r.get(timeout=TASK_TIMEOUT_S)) for r in sent]
                seconds.append(time.perf_counter() - started)
                cpu.append(sum(map(process_cpu_s, pids.values())) - cpu_before)
                tokens.append(
                    generated_tokens(store.batch(RUN_ID, step), results, len(problems) * config.group_size)
                )
                store.delete_batch(RUN_ID, step)
        return Measurement(workers, len(parts), seconds, tokens, cpu)
    finally:
        app.close()
        client.flushdb()
        client.close()


def generated_tokens(trajectories: list[Trajectory], results: list[RolloutResult], expected: int) -> int:
    """Thinking plus summary tokens of a step's trajectories, once all `expected` are stored and reported."""
    reported = sum(len(r.trajectory_ids) for r in results)
    if not len(trajectories) == reported == expected:
        raise RuntimeError(
            f"{len(trajectories)} trajectories stored, {reported} reported, {expected} expected"
        )
    return sum(
        len(t.thinking_ids) + sum(len(s.ids) for cut in t.cuts for s in cut.summaries) for t in trajectories
    )


def table(measurements: list[Measurement]) -> str:
    """One row per worker count; speed-ups against the first row (1 worker)."""
    first = measurements[0]
    lines = [
        "| workers | shards | seconds per repeat | worker CPU-s per repeat | tokens/s (best) "
        "| speed-up (best) | speed-up (median) | goal (best) |",
        "| ---: | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for m in measurements:
        best, median = m.best_rate / first.best_rate, m.median_rate / first.median_rate
        goal = GOALS.get(m.workers)
        verdict = "-" if goal is None else f"{'met' if best >= goal else 'NOT met'} (>= {goal}x)"
        seconds = ", ".join(f"{s:.2f}" for s in m.seconds)
        cpu = ", ".join(f"{s:.2f}" for s in m.worker_cpu_s)
        lines.append(
            f"| {m.workers} | {m.shards} | {seconds} | {cpu} | {m.best_rate:,.0f} | {best:.2f}x "
            f"| {median:.2f}x | {verdict} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers", default="1,2,4", help="worker counts, comma-separated, 1 first (the speed-ups' base)"
    )
    parser.add_argument("--problems", type=int, default=256, help="problems per step")
    parser.add_argument("--group-size", type=int, default=4, help="G: thinking traces per problem")
    parser.add_argument("--budgets", default="64,128,192,256", help="thinking budgets, comma-separated")
    parser.add_argument("--num-summaries", type=int, default=4, help="A: summaries per (trace, budget)")
    parser.add_argument("--summary-max-tokens", type=int, default=32)
    parser.add_argument("--shards-per-worker", type=int, default=1, help="shards = workers x this")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per worker count")
    # The engine's defaults are the rollout worker's (`RolloutSettings`).
    defaults = {name: field.default for name, field in RolloutSettings.model_fields.items()}
    parser.add_argument("--decode-step-s", type=float, default=defaults["latency_decode_step_s"])
    parser.add_argument("--prefill-token-s", type=float, default=defaults["latency_prefill_token_s"])
    parser.add_argument(
        "--max-rows", type=int, default=defaults["max_rows"], help="rows the engine decodes at once"
    )
    parser.add_argument("--model", type=Path, help="a model folder for its tokenizer (no weights are loaded)")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("WARNING")  # before anytime.processes binds its logger
    counts = [int(w) for w in args.workers.split(",")]
    if counts[0] != 1 or min(counts) < 1 or args.repeats < 1 or args.shards_per_worker < 1:
        raise SystemExit("--workers starts with 1 (the speed-ups' base); counts are >= 1")
    config = RolloutConfig(
        budgets=tuple(int(b) for b in args.budgets.split(",")),
        group_size=args.group_size,
        num_summaries=args.num_summaries,
        summary_max_tokens=args.summary_max_tokens,
    )
    problems = get_task("digit-chain").generate(args.problems, seed=11)
    if len(problems) < max(counts) * args.shards_per_worker:
        raise SystemExit(
            f"{len(problems)} problems cannot make {max(counts) * args.shards_per_worker} shards"
        )
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="anytime-scale-") as tmp:
        work = Path(tmp)
        model = args.model or (DEMO_MODEL if (DEMO_MODEL / "tokenizer.json").is_file() else None)
        model = (model or tokenizer_folder(work / "tokenizer")).resolve()
        with redis_server(work) as redis_url:
            env = {
                **os.environ,
                "ANYTIME_HOME": str(work),
                "ANYTIME_REDIS_URL": redis_url,
                "ANYTIME_LOG_LEVEL": "WARNING",
                "ANYTIME_ROLLOUT_ENGINE": "latency",
                "ANYTIME_ROLLOUT_MAX_ROWS": str(args.max_rows),
                "ANYTIME_ROLLOUT_LATENCY_DECODE_STEP_S": str(args.decode_step_s),
                "ANYTIME_ROLLOUT_LATENCY_PREFILL_TOKEN_S": str(args.prefill_token_s),
                "PYTHONUNBUFFERED": "1",
            }
            measurements = []
            for workers in counts:
                measured = measure(
                    workers, problems, config, model, env, work, args.shards_per_worker, args.repeats
                )
                measurements.append(measured)
                seconds = ", ".join(f"{s:.2f}" for s in measured.seconds)
                print(f"{workers} worker(s): {seconds} s", file=sys.stderr)
    if args.json:
        first = measurements[0]
        rows = [
            {
                **asdict(m),
                "best_tokens_per_s": m.best_rate,
                "median_tokens_per_s": m.median_rate,
                "speedup_best": m.best_rate / first.best_rate,
                "speedup_median": m.median_rate / first.median_rate,
                "goal": GOALS.get(m.workers),
                "goal_met": m.best_rate / first.best_rate >= GOALS[m.workers] if m.workers in GOALS else None,
            }
            for m in measurements
        ]
        config_json = {k: v for k, v in vars(args).items() if k != "json"} | {"model": str(model)}
        print(json.dumps({"config": config_json, "measurements": rows}, indent=2))
        return
    print(
        f"{args.problems} problems x G={args.group_size}, budgets {config.budgets}, A={args.num_summaries}, "
        f"summaries <= {args.summary_max_tokens} tokens, {args.repeats} repeats; latency engine: "
        f"{args.decode_step_s * 1000:g} ms per decode step of <= {args.max_rows} rows, "
        f"{args.prefill_token_s * 1e6:g} us per prompt token; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)"
    )
    print(table(measurements))


if __name__ == "__main__":
    main()
