"""The platform's overhead: N training steps through the services vs the same work in one process.

Services: the embedded stack's Celery workers (rollout, verify, learn, control) and the run driver with
its SQL commits (MLflow off: the null tracker). In one process: the same plain functions the workers call
(`run_rollout_job`, `verify_trajectories`, `run_learn_step`) with the same engine, verifier and learner,
on the same Redis. The first step (engine and learner loading, imports) is left out on both sides: the
figure is the steady-state time from the first step's end to the last step's end (through the services,
by the steps' commit times in SQL). Nothing else should run on the machine meanwhile.

Usage: python benchmarks/overhead.py [--model DIR] [--data FILE] [--steps N]
(defaults: the demo's warm model and training set in build/demo; run `make demo` once first).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan

STEPS = 5


def config(model: Path, data: Path, steps: int) -> RunConfig:
    return RunConfig(
        model=str(model),
        dataset=str(data),
        steps=steps,
        problems_per_step=8,
        group_size=4,
        num_summaries=2,
        summary_max_tokens=24,
        lr=1e-4,
    )


def through_services(cfg: RunConfig, home: Path) -> float:
    from anytime.celery_app import make_celery
    from anytime.db import repository
    from anytime.db.session import make_engine, make_session_factory, session_scope
    from anytime_cli.stack import EmbeddedStack

    os.environ["ANYTIME_CONTROL_TRACKING"] = "false"
    stack = EmbeddedStack(home, api=False, ui=False)
    with stack.running():
        factory = make_session_factory(make_engine(stack.database_url))
        with session_scope(factory) as session:
            run_id = repository.create_run(session, cfg).id
        app = make_celery(stack.redis_url)
        status = app.send_task("anytime.control.drive", kwargs={"run_id": run_id}).get(timeout=3600)
        app.close()
        with session_scope(factory) as session:
            steps, _ = repository.list_steps(session, run_id)
            committed = [s.created_at for s in sorted(steps, key=lambda s: s.step)]
    if status != "succeeded":
        raise SystemExit(f"the run through the services ended {status}; see {home / 'logs'}")
    return (committed[-1] - committed[0]).total_seconds()


def in_one_process(cfg: RunConfig, home: Path) -> float:
    import redis

    from anytime.contracts.verify import VerifyRequest
    from anytime.problems import load_problems
    from anytime.trajectory_store import TrajectoryStore
    from anytime.verification.settings import VerifierSettings
    from anytime.verification.verifier import Verifier
    from anytime_cli.stack import EmbeddedStack
    from services.control.driver import DriverDeps, RunDriver
    from services.learner.holder import LearnerHolder
    from services.learner.settings import LearnerSettings
    from services.learner.worker import run_learn_step
    from services.rollout.jobs import EngineHolder, run_rollout_job
    from services.rollout.settings import RolloutSettings
    from services.verifier.worker import verify_trajectories

    stack = EmbeddedStack(home, api=False, ui=False)
    stack.start()  # only redis is used: stop the workers so they take no CPU
    for service in stack.services[1:]:
        assert service.proc is not None
        service.proc.terminate()
        service.proc.wait()
    try:
        store = TrajectoryStore(redis.Redis.from_url(stack.redis_url))
        # The driver's own job builders, so both sides run exactly the same jobs.
        driver = RunDriver(DriverDeps(lambda: None, lambda n, k: {}, store, None, home / "runs"))  # type: ignore[arg-type]
        train = load_problems(Path(cfg.dataset))
        plan = RunPlan.from_config(cfg)  # what the API stores with a run
        engines = EngineHolder(RolloutSettings())
        learners = LearnerHolder(LearnerSettings())
        with Verifier.from_settings(VerifierSettings()) as verifier:
            ends = []
            version = 0
            model_dir = cfg.model
            for step in range(cfg.steps):
                for job in driver._rollout_jobs("bench", step, version, model_dir, train, cfg, plan):
                    rolled = run_rollout_job(job, engines, store)
                request = VerifyRequest(
                    run_id="bench", step=step, think_end_id=rolled["think_end_id"], eos_id=rolled["eos_id"]
                )
                verify_trajectories(store, verifier, request)
                learned = run_learn_step(
                    driver._learn_request("bench", step, version, cfg, plan), learners, store
                )
                version, model_dir = learned.policy_version, learned.model_dir
                store.delete_batch("bench", step)
                ends.append(time.perf_counter())
            return ends[-1] - ends[0]
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("build/demo/tiny-sft"))
    parser.add_argument("--data", type=Path, default=Path("build/demo/train.jsonl"))
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no model in {args.model}: run `make demo` first, or pass --model and --data")
    cfg = config(args.model.resolve(), args.data.resolve(), args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        local = in_one_process(cfg, Path(tmp) / "local")
        services = through_services(cfg, Path(tmp) / "services")
    print(f"{args.steps} steps, 8 problems x G=4, S=4, A=2 on the tiny model")
    timed = args.steps - 1
    print(f"in one process:     {local:7.1f} s for steps 2..{args.steps} ({local / timed:.1f} s/step)")
    print(f"through services:   {services:7.1f} s for steps 2..{args.steps} ({services / timed:.1f} s/step)")
    print(f"overhead ratio: {services / local:.2f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
