"""The run driver: one run, step by step, through the Celery queues (docs/method.md §3.1).

Each step: `rollout` in shards (trajectories → Redis), each shard's `verify` as soon as it lands (verdicts →
Redis; its result carries every summary's reward per budget) → `learn` (a new checkpoint = the next policy
version; its result carries the traces of `samples_per_step` problems, readable, with their advantages) →
commit the step to SQL (those rewards, samples, metrics, checkpoint, policy version) in one transaction →
MLflow (metrics, the samples as a table) → the next step. With `max_staleness` k ≥ 1 the rollouts of the
next k steps are launched before the learner trains (on the newest policy, at most k versions behind the
learner that trains on them), so generation overlaps training; k = 0 is the on-policy step, each rollout
on the last update's policy. The shards and the pipeline are `services.control.step_pipeline`.
Tasks are sent by name with their typed request and their results read as typed results, all from the
core's `anytime.contracts`: the driver imports no service. Evaluations (anytime accuracy on the eval set at
every budget of a uniform grid) run before the first step, every `eval_interval` steps, and at the end.

Restartable at any point: SQL holds the last committed step and policy version, and every task is
idempotent (trajectory ids are stable and write-once, verdicts are per summary id, a policy version's
checkpoint is written once), so a driver that dies and is re-delivered (or rescued) continues where SQL
says. One driver per run (`anytime.run_lease`). Cancel, a worker shutdown and a lost lease are checked at
every task boundary. Whatever else goes wrong, start-up included, ends the run `failed` with the error.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from anytime.contracts.evaluation import EVALUATE_TASK, EvalJob, EvalResult
from anytime.contracts.learn import LEARN_TASK, LearnRequest, LearnResult
from anytime.contracts.rollout import RolloutJob
from anytime.contracts.verify import BudgetReward
from anytime.curve_plot import CurveSeries, accuracy_vs_budget_png, series_label
from anytime.db import experiments, repository
from anytime.db import samples as stored_samples
from anytime.db.models import RunStatus
from anytime.logging import get_logger
from anytime.problems import Problem, load_problems, with_prompt_suffix
from anytime.run_config import RunConfig
from anytime.run_lease import DEFAULT_LEASE_TTL_S, RunLease
from anytime.run_plan import RunPlan, resolved_params
from anytime.samples import RolloutSample, sample_problem_ids, table_rows
from anytime.tracking import Tracker, log_start_vs_end
from anytime.trajectory_store import TrajectoryStore
from services.control.step_pipeline import (
    ProducedStep,
    StepInFlight,
    StepPipeline,
    shard_problems,
    shard_seed,
)

logger = get_logger(__name__)


class TaskRunner(Protocol):
    """Runs a task by name on its queue and returns its result (Celery: send_task + get)."""

    def __call__(self, name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]: ...


def one_rollout_worker() -> int:
    """The rollout workers a driver counts when nobody can tell it (tests, the embedded default)."""
    return 1


# Shards per step when sized from the live workers: a bound on the threads one run's pipeline may start.
MAX_AUTO_SHARDS = 64


class RunCancelled(Exception):
    """The run was asked to stop; raised at a task boundary."""


class DriverStopped(Exception):
    """This driver lets go of the run without ending it: its worker is shutting down, or another driver
    holds the lease now. The run stays resumable; the rescuer or the other driver carries it on."""


@dataclass
class DriverDeps:
    sessions: Callable[[], Session]
    run_task: TaskRunner
    store: TrajectoryStore
    tracker: Tracker
    runs_root: Path
    lease_ttl_s: int = DEFAULT_LEASE_TTL_S  # a dead driver's run is free again after this
    stopping: threading.Event = field(default_factory=threading.Event)  # set: let go at the next boundary
    rollout_workers: Callable[[], int] = one_rollout_worker  # live rollout workers: a step's shards
    poll_s: float = 2.0  # how often a driver waiting on in-flight shards looks for a cancel


class RunDriver:
    def __init__(self, deps: DriverDeps) -> None:
        self.deps = deps
        self._leases: dict[str, RunLease] = {}  # by run: one driver object serves a pool of threads

    def drive(self, run_id: str) -> str:
        """Run `run_id` to its end (or to a cancel); returns its final status, `skipped` when another
        driver holds it, `stopped` when this one let go of it (shutdown, lease lost)."""
        lease = RunLease(self.deps.store.client, run_id, self.deps.lease_ttl_s, self.deps.store.prefix)
        if not lease.acquire():
            logger.info("another driver holds this run; leaving it", run_id=run_id)
            return "skipped"
        self._leases[run_id] = lease
        try:
            with lease.kept():
                return self._drive(run_id)
        except DriverStopped as why:
            logger.info("driver let go of the run; it stays resumable", run_id=run_id, reason=str(why))
            return "stopped"
        finally:
            del self._leases[run_id]

    def _drive(self, run_id: str) -> str:
        with self.deps.sessions() as session:
            run = repository.get_run(session, run_id)
            if run is None:
                logger.warning("no such run; nothing to drive", run_id=run_id)
                return "missing"
            if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
                logger.info("run already ended; nothing to do", run_id=run_id, status=run.status)
                return str(run.status)
            if run.cancel_requested:  # asked while nobody drove it (its driver had died)
                self._end(run_id, RunStatus.CANCELLED, None, run.mlflow_run_id, "KILLED")
                return RunStatus.CANCELLED.value
            mlflow_run = run.mlflow_run_id
        log = logger.bind(run_id=run_id)
        try:
            config, plan, mlflow_run = self._start(run_id, mlflow_run)
            self._run_steps(run_id, config, plan, mlflow_run)
        except DriverStopped:
            raise
        except RunCancelled:
            self._end(run_id, RunStatus.CANCELLED, None, mlflow_run, "KILLED")
            log.info("run cancelled")
            return RunStatus.CANCELLED.value
        except Exception as err:
            if self.deps.stopping.is_set() or self._leases[run_id].lost.is_set():
                raise DriverStopped(f"{type(err).__name__} while letting go: {err}") from err
            if is_infrastructure_outage(err):  # Redis or the database away: carried on once it is back
                raise DriverStopped(f"{type(err).__name__}: {err}") from err
            message = f"{type(err).__name__}: {err}"
            self._end(run_id, RunStatus.FAILED, message[:4000], mlflow_run, "FAILED")
            log.error("run failed", error=message)
            return RunStatus.FAILED.value
        with self.deps.sessions() as session:
            # What `model: "run:<id>"` serves: the best checkpoint retention kept.
            promoted = repository.promote_best_checkpoint(session, run_id, repository.checkpoint_on_disk)
            session.commit()
        self._end(run_id, RunStatus.SUCCEEDED, None, mlflow_run, "FINISHED")
        log.info("run succeeded", promoted=None if promoted is None else promoted.policy_version)
        return RunStatus.SUCCEEDED.value

    def _start(self, run_id: str, mlflow_run: str | None) -> tuple[RunConfig, RunPlan, str | None]:
        """Mark the run running, read its stored plan (every job is built from it) and give it an MLflow
        run; whatever fails here fails the run."""
        with self.deps.sessions() as session:
            run = repository.require_run(session, run_id)
            config, plan = run.run_config(), run.run_plan()
            if run.status == RunStatus.QUEUED:
                repository.set_status(session, run_id, RunStatus.RUNNING)
            session.commit()
        if mlflow_run is None:
            mlflow_run = self.deps.tracker.start_run(
                config.name or run_id, resolved_params(config, plan), self._tags(run_id, config, plan)
            )
            self.deps.tracker.log_dict(mlflow_run, config.model_dump(mode="json"), "config.json")
            if mlflow_run is not None:  # the null tracker tracks nothing
                with self.deps.sessions() as session:
                    repository.set_mlflow_run_id(session, run_id, mlflow_run)
                    session.commit()
        return config, plan, mlflow_run

    def _tags(self, run_id: str, config: RunConfig, plan: RunPlan) -> dict[str, str]:
        tags = {
            "anytime.run_id": run_id,
            "algorithm": config.method.algorithm.value,
            "prior": ",".join(f"{p:g}" for p in plan.prior.probs),
            "baseline": plan.brpo.resolved_baseline.value,
            "model": config.model,
        }
        with self.deps.sessions() as session:  # a run of an experiment is a child of its MLflow run
            parent = experiments.parent_mlflow_run_id(session, run_id)
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        return tags

    def _end(
        self, run_id: str, status: RunStatus, error: str | None, mlflow_run: str | None, state: str
    ) -> None:
        with self.deps.sessions() as session:
            repository.set_status(session, run_id, status, error=error)
            session.commit()
        try:
            self.deps.tracker.end_run(mlflow_run, state)
        except Exception as err:  # the run's own status is what counts; MLflow may be down
            logger.warning("MLflow run not ended", run_id=run_id, error=str(err))

    def _check_cancel(self, run_id: str) -> None:
        if self.deps.stopping.is_set():
            raise DriverStopped("the control worker is shutting down")
        if self._leases[run_id].lost.is_set():
            raise DriverStopped("another driver holds the run's lease")
        with self.deps.sessions() as session:
            run = repository.get_run(session, run_id)
            if run is None or run.cancel_requested:
                raise RunCancelled(run_id)

    def _run_steps(self, run_id: str, config: RunConfig, plan: RunPlan, mlflow_run: str | None) -> None:
        with self.deps.sessions() as session:
            run = repository.get_run(session, run_id)
            assert run is not None
            start = 0 if run.step is None else run.step + 1
            version = run.policy_version
        suffix = config.prompt_suffix
        train = with_prompt_suffix(load_problems(config.dataset, config.dataset_columns), suffix)
        held_out = config.evaluation
        evaluation = (
            with_prompt_suffix(
                load_problems(held_out.dataset, held_out.dataset_columns)[: held_out.problems], suffix
            )
            if held_out.dataset
            else []
        )
        if start == 0 and evaluation:
            self._evaluate(run_id, config, plan, evaluation, 0, -1, config.model, mlflow_run)
        model_dir = self._model_dir(run_id, version, config)
        shards_cap = plan.rollout_shards or MAX_AUTO_SHARDS
        pipeline = StepPipeline(
            self.deps.run_task, max_parallel=shards_cap * (plan.max_staleness + 1), poll_s=self.deps.poll_s
        )
        in_flight: dict[int, StepInFlight] = {}
        last_commit = time.monotonic()

        def launch(step: int) -> None:
            jobs = self._rollout_jobs(run_id, step, version, model_dir, train, config, plan)
            in_flight[step] = pipeline.launch(jobs)
            logger.info(
                "rollout launched", run_id=run_id, step=step, policy_version=version, shards=len(jobs)
            )

        try:
            for step in range(start, config.steps):
                self._check_cancel(run_id)
                if step not in in_flight:
                    launch(step)
                produced = pipeline.collect(in_flight.pop(step), lambda: self._check_cancel(run_id))
                # Pipelined: the next steps generate on this policy while the learner trains this one.
                for ahead in range(step + 1, min(step + plan.max_staleness, config.steps - 1) + 1):
                    if ahead not in in_flight:
                        launch(ahead)
                self._check_cancel(run_id)
                shown = sample_problem_ids(
                    [p.id for p in self._problems_of_step(train, step, config)], config.samples_per_step
                )
                learn = self._learn_request(run_id, step, version, config, plan, shown)
                learned = LearnResult.model_validate(
                    self.deps.run_task(LEARN_TASK, learn.model_dump(mode="json"))
                )
                metrics = {
                    **learned.metrics,
                    **produced.verified.metrics(),
                    **pipeline_metrics(produced, version, time.monotonic() - last_commit),
                }
                version, model_dir = learned.policy_version, learned.model_dir
                self._commit_step(
                    run_id, step, version, model_dir, metrics, produced.verified.rewards, learned.samples
                )
                last_commit = time.monotonic()
                self.deps.tracker.log_metrics(mlflow_run, metrics, step=version)
                if learned.samples:
                    self.deps.tracker.log_table(
                        mlflow_run, table_rows(learned.samples), f"samples/step_{step:06d}.json"
                    )
                self.deps.store.delete_batch(run_id, step)
                logger.info("step committed", run_id=run_id, step=step, policy_version=version)
                last = step == config.steps - 1
                if evaluation and (last or (held_out.interval and (step + 1) % held_out.interval == 0)):
                    self._evaluate(run_id, config, plan, evaluation, version, step, model_dir, mlflow_run)
        finally:
            pipeline.close()

    def _model_dir(self, run_id: str, version: int, config: RunConfig) -> str:
        if version == 0:
            return config.model
        with self.deps.sessions() as session:
            found = [c for c in repository.list_checkpoints(session, run_id) if c.policy_version == version]
            checkpoint = found[0] if found else None
        if checkpoint is None:
            raise LookupError(f"run {run_id} is at policy version {version} but has no checkpoint row for it")
        return checkpoint.path

    @staticmethod
    def _problems_of_step(train: list[Problem], step: int, config: RunConfig) -> list[Problem]:
        """A reproducible sample of the training set for a step (different every step, same on a re-run)."""
        rng = random.Random(f"{config.seed}:{step}")
        return rng.sample(train, min(config.problems_per_step, len(train)))

    def _rollout_jobs(
        self,
        run_id: str,
        step: int,
        version: int,
        model_dir: str,
        train: list[Problem],
        config: RunConfig,
        plan: RunPlan,
    ) -> list[RolloutJob]:
        """The step's rollout in shards of whole problem groups: as many as the run asks for, else one per
        live rollout worker (never more than problems)."""
        problems = self._problems_of_step(train, step, config)
        shards = plan.rollout_shards or min(max(1, self.deps.rollout_workers()), MAX_AUTO_SHARDS)
        step_seed = config.seed * 100_003 + step
        return [
            RolloutJob(
                run_id=run_id,
                step=step,
                policy_version=version,
                model_dir=Path(model_dir),
                problems=shard,
                config=plan.rollout,
                seed=shard_seed(step_seed, index),
                accept_newer=plan.max_staleness > 0,
            )
            for index, shard in enumerate(shard_problems(problems, shards))
        ]

    def _learn_request(
        self,
        run_id: str,
        step: int,
        version: int,
        config: RunConfig,
        plan: RunPlan,
        sample_problems: Sequence[str] = (),
    ) -> LearnRequest:
        return LearnRequest(
            run_id=run_id,
            step=step,
            policy_version=version + 1,
            checkpoint_root=self.deps.runs_root / run_id / "checkpoints",
            model_dir=Path(config.model),
            config=plan.learner,
            sample_problems=list(sample_problems),
        )

    def _commit_step(
        self,
        run_id: str,
        step: int,
        version: int,
        model_dir: str,
        metrics: dict[str, float],
        rewards: Sequence[BudgetReward],
        samples: Sequence[RolloutSample] = (),
    ) -> None:
        with self.deps.sessions() as session:
            repository.record_rewards(session, run_id, step, rewards)
            stored_samples.record_samples(session, run_id, samples)
            repository.record_step(session, run_id, step, version, metrics)
            repository.record_checkpoint(session, run_id, version, step, model_dir)
            repository.set_policy_version(session, run_id, version, step)
            session.commit()

    def _evaluate(
        self,
        run_id: str,
        config: RunConfig,
        plan: RunPlan,
        problems: list[Problem],
        version: int,
        step: int,
        model_dir: str,
        mlflow_run: str | None,
    ) -> None:
        self._check_cancel(run_id)
        job = EvalJob(
            run_id=run_id,
            policy_version=version,
            model_dir=Path(model_dir),
            problems=problems,
            budgets=list(plan.eval_budgets),
            summary_max_tokens=plan.summary_max_tokens,
            sampling=plan.eval_sampling,
            sample_problems=sample_problem_ids([p.id for p in problems], config.evaluation.sample_problems),
            step=step,
        )
        result = EvalResult.model_validate(self.deps.run_task(EVALUATE_TASK, job.model_dump(mode="json")))
        sampled = repository.SampledEvaluation.of(result)
        with self.deps.sessions() as session:
            repository.record_evaluation(
                session, run_id, version, step, result.budgets, result.accuracy, result.anytime_score, sampled
            )
            stored_samples.record_samples(session, run_id, result.samples)
            session.commit()
            evaluations = repository.list_evaluations(session, run_id)
        self.deps.tracker.log_metrics(mlflow_run, result.metrics(), step=version)
        series = CurveSeries(
            series_label(f"policy v{version}", result.num_samples, result.temperature),
            result.budgets,
            result.accuracy,
            result.accuracy_ci_low,
            result.accuracy_ci_high,
        )
        png = accuracy_vs_budget_png([series], title=config.name or run_id)
        self.deps.tracker.log_png(mlflow_run, png, f"curves/eval_v{version:06d}.png")
        if result.samples:
            self.deps.tracker.log_table(
                mlflow_run, table_rows(result.samples), f"samples/eval_v{version:06d}.json"
            )
        log_start_vs_end(self.deps.tracker, mlflow_run, evaluations, config.name or run_id)
        logger.info(
            "evaluation committed",
            run_id=run_id,
            policy_version=version,
            accuracy=result.accuracy,
            anytime_score=result.anytime_score,
        )


def pipeline_metrics(produced: ProducedStep, learner_version: int, step_wall_s: float) -> dict[str, float]:
    """The driver's view of a step: its shards, how far its policy lagged the learner that trained on it,
    how long the driver waited for its experience and the wall time since the previous commit."""
    return {
        "pipeline/shards": float(len(produced.rollouts)),
        "pipeline/policy_lag": float(learner_version - min(produced.policy_versions)),
        "pipeline/wait_s": produced.waited_s,
        "pipeline/step_wall_s": step_wall_s,
    }


def is_infrastructure_outage(err: BaseException) -> bool:
    """Redis or the database did not answer: nothing is wrong with the run itself."""
    import kombu.exceptions
    import redis
    import sqlalchemy.exc

    broker = (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError)
    for cause in (err, err.__cause__):
        if isinstance(cause, broker):
            return True
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and (
            cause.connection_invalidated or any(word in str(cause).lower() for word in _DB_OUTAGE_WORDS)
        ):
            return True
    return False


# A database error with one of these is the server (or the file's lock) away, not a broken schema or query.
_DB_OUTAGE_WORDS = (
    "could not connect",
    "connection refused",
    "server closed",
    "database is locked",
    "terminating connection",
    "connection reset",
)
