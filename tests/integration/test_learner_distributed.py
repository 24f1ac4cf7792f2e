"""The data-parallel learner: 2 gloo processes on the CPU train exactly as one process does.

Three steps on the tiny model (the third on stale trajectories, so the behaviour weights are taken per rank
too; one with a mini-batch of a single tree, so a rank holds nothing of it): the 2-process weights, optimizer
state and metrics match the single process's within float summation order. Then the same through the learn
worker's group (`RankZeroHolder` with `world_size=2`, its second rank a spawned child), whose
checkpoints rank 0 writes in the usual format; and the real `celery worker -P solo -Q learn` with
`ANYTIME_LEARNER_WORLD_SIZE=2` on Redis.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from anytime.brpo.config import BRPOConfig
from anytime.contracts.learn import LEARN_TASK, LearnerConfig, LearnRequest
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from anytime.trajectory import Trajectory
from anytime.trajectory_store import TrajectoryStore
from anytime.verdict import VerdictRecord
from services.learner.batch import MissingVerdictsError
from services.learner.checkpoint import CheckpointStore
from services.learner.group import LearnerGroupError, RankZeroHolder
from services.learner.learner import Learner
from services.learner.settings import LearnerSettings
from services.learner.worker import run_learn_step
from tests.fixtures.servers import RedisServer
from tests.fixtures.synthetic import StepShape, synthetic_step
from tests.fixtures.workers import start_worker, stop_worker

if TYPE_CHECKING:
    from celery import Celery

pytestmark = pytest.mark.integration

BRPO = BRPOConfig(b_max=16, num_budgets=2, num_summaries=2, summary_max_tokens=4, group_size=2)
# Small micro-batches: each rank holds several per mini-batch; lag 1: the third step is stale.
CONFIG = LearnerConfig(brpo=BRPO, lr=1e-3, micro_batch_tokens=100, max_staleness=1)
TOLERANCE = 1e-5
Step = tuple[list[Trajectory], dict[str, dict[str, VerdictRecord]]]


def _steps(model_dir: Path, run_id: str = "synthetic") -> list[Step]:
    """Step 0 and 1 on-policy (4 problems), step 2 a version behind with 1 problem (1 tree per mini-batch)."""
    from transformers import AutoTokenizer

    facts = ModelFacts.from_tokenizer(AutoTokenizer.from_pretrained(model_dir), SummaryFormat())
    special = {facts.think_end_id, facts.eos_id, facts.pad_id, facts.think_start_id}
    steps = []
    for step, (problems, version) in enumerate(((4, 0), (4, 1), (1, 1))):
        steps.append(
            synthetic_step(
                StepShape(
                    problems=problems, group_size=2, budgets=(8, 16), num_summaries=2, summary_tokens=4
                ),
                vocab=[i for i in range(10, 300) if i not in special],
                ellipsis_ids=facts.ellipsis_ids,
                delimiter_ids=facts.delimiter_ids,
                think_end_id=facts.think_end_id,
                eos_id=facts.eos_id,
                seed=60 + step,
                run_id=run_id,
                step=step,
                policy_version=version,
            )
        )
    return steps


def _without_timings(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("perf/")}


def _rank_main(rank: int, world_size: int, store_path: str, model_dir: str, out: str) -> None:
    """One rank of the data-parallel learner: 3 steps; rank 0 saves the checkpoint."""
    import torch.distributed as dist

    from services.learner.distributed import close_data_parallel, init_data_parallel

    torch.set_num_threads(1)
    store = dist.FileStore(store_path, world_size)
    parallel = init_data_parallel(rank, world_size, store, device_type="cpu", timeout_s=300)
    try:
        learner = Learner.from_model_dir(Path(model_dir), CONFIG, "cpu", parallel=parallel)
        metrics = [_without_timings(learner.step(*step)) for step in _steps(Path(model_dir))]
        (Path(out) / f"metrics-{rank}.json").write_text(json.dumps(metrics))
        if rank == 0:
            learner.save(CheckpointStore(Path(out) / "checkpoints"), run_id="r", step=2, metrics=metrics[-1])
    finally:
        close_data_parallel()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The single-process learner's checkpoint after the 3 steps, and its metrics."""
    out = tmp_path_factory.mktemp("single")
    learner = Learner.from_model_dir(tiny_model_dir, CONFIG, "cpu")
    metrics = [_without_timings(learner.step(*step)) for step in _steps(tiny_model_dir)]
    checkpoint = learner.save(CheckpointStore(out), run_id="r", step=2, metrics=metrics[-1])
    return checkpoint.path, metrics


def _max_weight_difference(expected: Path, actual: Path) -> float:
    want = load_file(expected / "model" / "model.safetensors")
    got = load_file(actual / "model" / "model.safetensors")
    assert set(want) == set(got)
    return max(float((got[name] - want[name]).abs().max()) for name in want)


def _assert_optimizer_states_match(expected: Path, actual: Path) -> None:
    want = torch.load(expected / "trainer_state.pt", weights_only=True)
    got = torch.load(actual / "trainer_state.pt", weights_only=True)
    assert got["policy_version"] == want["policy_version"] == 3
    for index, state in want["optimizer"]["state"].items():
        other = got["optimizer"]["state"][index]
        assert float(other["step"]) == float(state["step"]) == 6
        torch.testing.assert_close(other["exp_avg"], state["exp_avg"], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(other["exp_avg_sq"], state["exp_avg_sq"], rtol=1e-4, atol=1e-12)


def _assert_metrics_match(expected: list[dict[str, float]], actual: list[dict[str, float]]) -> None:
    for want, got in zip(expected, actual, strict=True):
        assert set(got) == set(want)
        for key, value in want.items():
            if key == "batch/micro_batches":  # each rank plans its own share's micro-batches
                continue
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


def test_two_gloo_processes_train_as_one(
    tiny_model_dir: Path, single: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    expected, expected_metrics = single
    mp.spawn(
        _rank_main,
        args=(2, str(tmp_path / "store"), str(tiny_model_dir), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    rank_metrics = [json.loads((tmp_path / f"metrics-{r}.json").read_text()) for r in range(2)]
    assert rank_metrics[0] == rank_metrics[1]  # merged on every rank
    assert rank_metrics[0][2]["staleness/max"] == 1 and "policy/behaviour_weight_mean" in rank_metrics[0][2]
    _assert_metrics_match(expected_metrics, rank_metrics[0])
    actual = CheckpointStore(tmp_path / "checkpoints").get(3)
    assert actual is not None
    difference = _max_weight_difference(expected, actual.path)
    print(f"max |weight(2 processes) - weight(1 process)| after 3 steps: {difference:.3g}")
    assert difference <= TOLERANCE
    _assert_optimizer_states_match(expected, actual.path)


class MemoryStore:
    """The trajectory store's reading side, in memory (the worker's Redis is not what this tests)."""

    def __init__(self, steps: list[Step], verified: bool = True) -> None:
        self.steps = steps
        self.verdict_records = {t: v for _, verdicts in steps for t, v in verdicts.items() if verified}

    def batch(self, run_id: str, step: int) -> list[Trajectory]:
        return list(self.steps[step][0])

    def verdicts(self, trajectory_id: str) -> dict[str, VerdictRecord]:
        return dict(self.verdict_records.get(trajectory_id, {}))


def _request(step: int, root: Path, model_dir: Path) -> LearnRequest:
    return LearnRequest(
        run_id="r",
        step=step,
        policy_version=step + 1,
        checkpoint_root=root,
        model_dir=model_dir,
        config=CONFIG,
    )


def test_the_learn_worker_starts_its_group_and_rank_0_writes_the_checkpoints(
    tiny_model_dir: Path, single: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    expected, expected_metrics = single
    steps = _steps(tiny_model_dir)
    # A fourth step: step 1's data again, rolled out by version 3.
    fourth = ([t.model_copy(update={"step": 3, "policy_version": 3}) for t in steps[1][0]], steps[1][1])
    store = MemoryStore([*steps, fourth])
    settings = LearnerSettings(world_size=2, device="cpu", threads=1, group_timeout_s=120)
    holder = RankZeroHolder(settings)
    root = tmp_path / "checkpoints"
    try:
        results = [run_learn_step(_request(s, root, tiny_model_dir), holder, store) for s in range(3)]
        assert holder.group is not None
        group = holder.group
        followers = [p.pid for p in group.processes]
        assert all(r.applied for r in results) and results[-1].policy_version == 3
        _assert_metrics_match(expected_metrics, [_without_timings(r.metrics) for r in results])
        difference = _max_weight_difference(expected, Path(results[-1].checkpoint))
        print(f"worker group: max |weight(2 processes) - weight(1 process)| after 3 steps: {difference:.3g}")
        assert difference <= TOLERANCE
        _assert_optimizer_states_match(expected, Path(results[-1].checkpoint))

        # Missing verdicts: refused alike on both ranks, the group stays.
        with pytest.raises(MissingVerdictsError, match="no verdict"):
            run_learn_step(_request(3, root, tiny_model_dir), holder, MemoryStore([*steps, fourth], False))
        assert holder.group is group and not group.closed and [p.pid for p in group.processes] == followers
        again = run_learn_step(_request(2, root, tiny_model_dir), holder, store)  # re-delivered: not redone
        assert not again.applied and again.metrics == results[-1].metrics

        # A follower that dies: the task fails and the group is stopped; the next task starts a fresh
        # group, which resumes from rank 0's checkpoint.
        group.processes[0].kill()
        group.processes[0].join()
        with pytest.raises(LearnerGroupError, match="exited"):
            run_learn_step(_request(3, root, tiny_model_dir), holder, store)
        assert group.closed and not holder.learners and not any(p.is_alive() for p in group.processes)
        resumed = run_learn_step(_request(3, root, tiny_model_dir), holder, store)
        assert resumed.applied and resumed.policy_version == 4 and holder.group is not group
    finally:
        holder.close()
    assert holder.group is not None and not any(p.is_alive() for p in holder.group.processes)


def test_a_celery_learn_worker_with_world_size_2_trains_as_one_process(
    tiny_model_dir: Path,
    single: tuple[Path, list[dict]],
    redis_server: RedisServer,
    celery_client: Celery,
    trajectory_store: TrajectoryStore,
    tmp_path: Path,
) -> None:
    expected, _ = single
    run_id = f"dp-{uuid.uuid4().hex[:8]}"
    for trajectories, verdicts in _steps(tiny_model_dir, run_id):
        trajectory_store.put_many(trajectories)
        for t in trajectories:
            trajectory_store.put_verdicts(t.id, verdicts[t.id])
    log = tmp_path / "worker.log"
    env = {
        "ANYTIME_HOME": str(tmp_path),
        "ANYTIME_LEARNER_DEVICE": "cpu",
        "ANYTIME_LEARNER_THREADS": "1",
        "ANYTIME_LEARNER_WORLD_SIZE": "2",
    }
    worker = start_worker("services.learner.worker:app", "learn", ["-P", "solo"], redis_server.url, log, env)
    try:
        for step in range(3):
            request = _request(step, tmp_path / "checkpoints", tiny_model_dir).model_copy(
                update={"run_id": run_id}
            )
            result = celery_client.send_task(LEARN_TASK, kwargs=request.model_dump(mode="json")).get(
                timeout=300
            )
            assert result["applied"] and result["policy_version"] == step + 1
        difference = _max_weight_difference(expected, Path(result["checkpoint"]))
        print(f"celery worker group: max |weight(2 processes) - weight(1 process)|: {difference:.3g}")
        assert difference <= TOLERANCE
        assert log.read_text(errors="replace").count("learner group started") == 1
    finally:
        stop_worker(worker, log)
