"""The learner on real trajectories, and the `learn` worker as a real `celery worker -P solo -Q learn`.

Trajectories come from the anytime rollout on the transformers engine with the tiny model. Rewards: the
real verifier where the test is about its verdicts; elsewhere hand-assigned (a stable hash of the summary
id), because a random-weight model never earns a reward and an update needs signal. The worker is this
module's child process, stopped by its handle.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from anytime.brpo.config import BRPOConfig
from anytime.brpo.logprobs import packed_logprobs
from anytime.brpo.packing import collate_trees
from anytime.contracts.learn import LEARN_TASK, LearnerConfig
from anytime.contracts.rollout import RolloutConfig
from anytime.synth import get_task
from anytime.trajectory import Trajectory
from anytime.trajectory_store import TrajectoryStore
from anytime.verdict import VerdictRecord
from services.engines.transformers_engine import TransformersEngine
from services.learner.batch import build_step_batch, rollout_logprobs
from services.learner.learner import Learner
from services.rollout.anytime_rollout import rollout
from tests.fixtures.servers import RedisServer
from tests.fixtures.synthetic import verdict
from tests.fixtures.workers import start_worker, stop_worker

if TYPE_CHECKING:
    from celery import Celery

pytestmark = pytest.mark.integration

ROLLOUT = RolloutConfig(budgets=(8, 16), group_size=2, num_summaries=2, summary_max_tokens=6)
BRPO = BRPOConfig(b_max=16, num_budgets=2, num_summaries=2, summary_max_tokens=6, group_size=2)
CONFIG = LearnerConfig(brpo=BRPO, lr=1e-3)
PROBLEMS = get_task("digit-chain").generate(2, seed=7)
RESULT_TIMEOUT_S = 180  # the first task loads torch and the model in the worker
REQUIRED_METRICS = {
    "loss/policy",
    "policy/clip_fraction",
    "policy/approx_kl",
    "policy/entropy",
    "optim/grad_norm",
    "optim/lr",
    "reward/budget_8/mean",
    "reward/budget_16/mean",
    "anytime/score",
    "thinking/length_mean",
    "thinking/closed_share",
    "summary/length_mean",
    "perf/tokens_per_s",
    "variance/brpo",
    "variance/v2",
}


def signal_verdicts(trajectory: Trajectory) -> dict[str, VerdictRecord]:
    """Rewards that always carry signal, whatever the sampled thoughts and run id: the first summary of every
    cut is right, the others only for odd traces. So within each problem group the traces' returns differ
    (thinking advantages) and trace 0's summaries of a cut differ (summary advantages): every mini-batch of
    whole groups has an update to make."""

    def reward(sample_index: int) -> float:
        return 1.0 if sample_index == 0 else float(trajectory.trace_index % 2)

    return {
        trajectory.summary_id(c, s): verdict(reward(s))
        for c, cut in enumerate(trajectory.cuts)
        for s in range(len(cut.summaries))
    }


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny forwards on a small, busy machine: two threads contend and run ~50x slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TransformersEngine:
    return TransformersEngine.from_model_dir(tiny_model_dir)


def test_real_verdicts_and_engine_log_probs_feed_the_learner(
    engine: TransformersEngine, store: TrajectoryStore, tiny_model_dir: Path
) -> None:
    from anytime.contracts.verify import VerifyRequest
    from anytime.verification.verifier import Verifier
    from services.verifier.worker import verify_trajectories

    trajectories = rollout(engine, PROBLEMS, ROLLOUT, run_id=f"real-{uuid.uuid4().hex[:8]}", step=0, seed=1)
    store.put_many(trajectories)
    request = VerifyRequest(
        trajectory_ids=[t.id for t in trajectories],
        think_end_id=engine.facts.think_end_id,
        eos_id=engine.facts.eos_id,
    )
    with Verifier(timeout_s=5, workers=1) as verifier:
        report = verify_trajectories(store, verifier, request)
    assert report.graded == report.summaries > 0
    verdicts = {t.id: store.verdicts(t.id) for t in trajectories}

    learner = Learner.from_model_dir(tiny_model_dir, CONFIG, device="cpu")
    # The recomputed old log-probs on packed trees equal the engine's, token by token.
    batch = build_step_batch(trajectories, verdicts, BRPO, BRPO.budget_prior())
    packed = collate_trees(batch.trees, learner.pad_id)
    with torch.no_grad():
        recomputed = packed_logprobs(learner.model, packed).logprobs
    for index, (tree, trajectory) in enumerate(zip(batch.trees, batch.trajectories, strict=True)):
        trained = tree.trainable
        torch.testing.assert_close(
            packed.tree_values(recomputed, index)[trained],
            rollout_logprobs(trajectory, tree)[trained],
            rtol=0,
            atol=2e-4,
        )
    metrics = learner.step(trajectories, verdicts)
    statuses = {k.removeprefix("verdict/"): v for k, v in metrics.items() if k.startswith("verdict/")}
    assert sum(statuses.values()) == report.summaries and statuses == report.statuses
    assert REQUIRED_METRICS - {"variance/brpo", "variance/v2"} <= set(metrics)


def _start_worker(redis_url: str, log_path: Path, home: Path) -> subprocess.Popen[bytes]:
    env = {"ANYTIME_HOME": str(home), "ANYTIME_LEARNER_DEVICE": "cpu", "ANYTIME_LEARNER_THREADS": "1"}
    return start_worker("services.learner.worker:app", "learn", ["-P", "solo"], redis_url, log_path, env)


class WorkerProcess:
    """The worker under test, restartable (a new process is a crash-and-restart)."""

    def __init__(self, redis_url: str, folder: Path) -> None:
        self.redis_url, self.folder = redis_url, folder
        self.log = folder / "worker.log"
        self.proc = _start_worker(redis_url, self.log, folder)

    def restart(self) -> None:
        stop_worker(self.proc)
        self.proc = _start_worker(self.redis_url, self.log, self.folder)

    def loads(self) -> int:
        return self.log.read_text(errors="replace").count("learner loaded")


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(redis_server.url, tmp_path_factory.mktemp("learn-worker"))
    try:
        yield process
    finally:
        stop_worker(process.proc, process.log)


@pytest.fixture(scope="module")
def client(celery_client: Celery) -> Celery:
    return celery_client


@pytest.fixture
def store(trajectory_store: TrajectoryStore) -> TrajectoryStore:
    return trajectory_store


def _learn(client: Celery, **request: Any) -> dict[str, Any]:
    return client.send_task(LEARN_TASK, kwargs=request).get(timeout=RESULT_TIMEOUT_S)


def _roll_out(
    engine: TransformersEngine, store: TrajectoryStore, run_id: str, step: int, verdicts: bool = True
):
    trajectories = rollout(engine, PROBLEMS, ROLLOUT, run_id=run_id, step=step, seed=step)
    store.put_many(trajectories)
    if verdicts:
        for t in trajectories:
            store.put_verdicts(t.id, signal_verdicts(t))
    return trajectories


def test_worker_trains_steps_into_checkpoints_idempotently_and_resumes_after_a_restart(
    worker: WorkerProcess,
    client: Celery,
    store: TrajectoryStore,
    engine: TransformersEngine,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    base = {
        "run_id": run_id,
        "checkpoint_root": str(tmp_path / "checkpoints"),
        "model_dir": str(tiny_model_dir),
        "config": CONFIG.model_dump(mode="json"),
    }
    _roll_out(engine, store, run_id, step=0)
    first = _learn(client, **base, step=0, policy_version=1)
    assert first["applied"] and first["policy_version"] == 1
    assert Path(first["checkpoint"]) == tmp_path / "checkpoints" / "policy-000001"
    assert set(first["metrics"]) >= REQUIRED_METRICS and first["metrics"]["optim/steps"] == 2

    again = _learn(client, **base, step=0, policy_version=1)  # a re-delivered task: not applied twice
    assert not again["applied"] and again["metrics"] == first["metrics"]

    # The rollout reloads the new version from the checkpoint's model folder and rolls out step 1.
    engine.load_weights(Path(first["model_dir"]), 1)
    assert {t.policy_version for t in _roll_out(engine, store, run_id, step=1)} == {1}
    second = _learn(client, **base, step=1, policy_version=2)
    assert second["applied"] and worker.loads() == 1  # the model stayed loaded between the two steps

    worker.restart()  # a crash: the new process has no learner; it resumes from version 2 on disk
    engine.load_weights(Path(second["model_dir"]), 2)
    _roll_out(engine, store, run_id, step=2)
    third = _learn(client, **base, step=2, policy_version=3)
    assert third["applied"] and worker.loads() == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "policy-000001",
        "policy-000002",
        "policy-000003",
    ]


def test_missing_verdicts_and_bad_requests_fail_the_task_with_the_reason(
    worker: WorkerProcess,
    client: Celery,
    store: TrajectoryStore,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    fresh = TransformersEngine.from_model_dir(tiny_model_dir)  # policy version 0
    trajectories = _roll_out(fresh, store, run_id, step=0, verdicts=False)
    store.put_verdicts(trajectories[0].id, signal_verdicts(trajectories[0]))
    request = {
        "run_id": run_id,
        "step": 0,
        "policy_version": 1,
        "checkpoint_root": str(tmp_path / "checkpoints"),
        "model_dir": str(tiny_model_dir),
        "config": CONFIG.model_dump(mode="json"),
    }
    with pytest.raises(Exception, match="no verdict"):
        _learn(client, **request)
    assert not (tmp_path / "checkpoints" / "policy-000001").exists()
    with pytest.raises(Exception, match="policy_version"):
        _learn(client, **{**request, "policy_version": 0})
