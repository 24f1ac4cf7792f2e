"""The learners a learn worker process keeps between tasks, one per run, so that a run's model and
optimizer are loaded once (from its last checkpoint, or its initial model) rather than every step.

Torch is imported only when a learner is loaded or dropped: the worker module imports this one.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from typing import TYPE_CHECKING

from anytime.contracts.learn import LearnRequest
from anytime.logging import get_logger
from services.learner.checkpoint import CheckpointStore
from services.learner.settings import LearnerSettings

if TYPE_CHECKING:
    from anytime.trajectory import Trajectory
    from services.learner.batch import Verdicts
    from services.learner.distributed import DataParallel
    from services.learner.learner import Learner

logger = get_logger(__name__)


def checkpoint_store(request: LearnRequest) -> CheckpointStore:
    return CheckpointStore(request.checkpoint_root, request.config.keep_last, request.config.keep_every)


class LearnerHolder:
    """The process's learners, one per run (checkpoint root + config), kept between tasks.

    At most `settings.max_learners` stay loaded (least recently used dropped first): with two runs
    interleaving on one worker, each keeps its model and optimizer instead of reloading them from its
    checkpoint every step. A learner is replaced when a task needs another version of its run.

    In a data-parallel group every rank keeps such a holder (`parallel`: its place in the group); rank 0's
    also leads the group (`services.learner.group.RankZeroHolder`).
    """

    def __init__(self, settings: LearnerSettings, parallel: DataParallel | None = None) -> None:
        self.settings = settings
        self.parallel = parallel
        self.learners: OrderedDict[tuple[str, str], Learner] = OrderedDict()

    def drop(self, key: tuple[str, str] | None = None) -> None:
        """Forget one run's learner (or all of them) and free its memory."""
        if key is None:
            self.learners.clear()
        else:
            self.learners.pop(key, None)
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @staticmethod
    def key(request: LearnRequest) -> tuple[str, str]:
        return (str(request.checkpoint_root.resolve()), request.config.model_dump_json())

    def at_version(self, request: LearnRequest, checkpoints: CheckpointStore) -> Learner:
        """A learner holding version `policy_version - 1` of this run with this config."""
        from services.learner.learner import Learner

        key = self.key(request)
        base = request.policy_version - 1
        held = self.learners.get(key)
        if held is not None and held.policy_version == base and not held.broken:
            self.learners.move_to_end(key)
            return held
        self.drop(key)
        while len(self.learners) >= self.settings.max_learners:
            self.drop(next(iter(self.learners)))
        if self.settings.threads is not None:
            import torch

            torch.set_num_threads(self.settings.threads)
        device = self.settings.device
        if base == 0:
            learner = Learner.from_model_dir(
                request.model_dir, request.config, device, parallel=self.parallel
            )
        else:
            checkpoint = checkpoints.require(base, verify=self.settings.checkpoint_verify)
            learner = Learner.from_checkpoint(checkpoint, request.config, device, self.parallel)
        logger.info("learner loaded", run_id=request.run_id, policy_version=base, device=str(learner.device))
        self.learners[key] = learner
        return learner

    def group_step(
        self, request: LearnRequest, trajectories: list[Trajectory], verdicts: Verdicts
    ) -> tuple[Learner, dict[str, float]]:
        """The step on every rank of a data-parallel group: only rank 0's holder leads one."""
        raise TypeError(
            f"world_size={self.settings.world_size}: a data-parallel step needs rank 0's holder "
            "(services.learner.group.RankZeroHolder; the worker's `learner_holder` picks it)"
        )

    def close(self) -> None:
        """Drop the learners."""
        self.drop()
