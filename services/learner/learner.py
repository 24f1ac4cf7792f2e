"""The learner: one policy and its trainer state, kept for a whole run, updated once per rollout step.

Simplifications, stated first: one PPO epoch, no reference-policy KL (the paper has none; the config has
no knob for it), no shuffling; several processes only as replicated data parallelism (`distributed`: each
rank the whole model and a share of every mini-batch; no sharded FSDP2 yet, docs/architecture.md "Several
GPUs").

`Learner` is the facade the `learn` worker drives: build it (`from_model_dir` for version 0,
`from_checkpoint` to resume), call `step(trajectories, verdicts)` once per rollout step, then `save` the new
policy version. It owns the order of things and the "broken" flag; the work lives beside it, one concept per
module. Reading order for a newcomer:

1. `learner` (this file): a step is `build_step_batch` → policy-lag check → `batch_metrics` →
   `PPOUpdate.run` → `policy_version + 1` → metrics; `save` writes the model folder and trainer state
   into a `CheckpointStore` folder.
2. `batch`: trajectories + verdicts → rewards `R[g, j]`, advantages per problem group (the core library's),
   one packed tree per trajectory (`pack_tree`); every check before the model is touched.
3. `update`: the BRPO (or GRPO) update of docs/method.md §2.5–2.10 — micro-batches under a token budget
   (`microbatches`), old log-probs, PPO-clip over `mini_batches` mini-batches (one AdamW step each,
   grad-norm clipped, one normaliser per mini-batch so micro-batching does not change the result).
4. `trainer_state`: AdamW, the warm-up schedule, RNG and float32 master weights; saving and resuming them.
5. `model_io`: the policy from a Hugging Face folder (float32, tree attention, device), the folder vLLM
   serves (in the serving dtype).
6. `checkpoint` (policy versions on disk), `metrics` (what the data alone says), `worker` (the task).
7. `distributed` (a data-parallel learner: every rank builds a `Learner` with the same `DataParallel`
   group and calls `step` with the same data; rank 0 saves), `group` (the worker's ranks as processes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anytime.contracts.learn import LearnerConfig
from anytime.model_facts import pad_id_of
from anytime.trajectory import Trajectory
from services.learner.batch import BatchMismatchError, Verdicts, build_step_batch
from services.learner.checkpoint import MODEL_DIR, TRAINER_STATE, Checkpoint, CheckpointStore
from services.learner.distributed import DataParallel
from services.learner.metrics import batch_metrics, staleness_metrics
from services.learner.model_io import (
    folder_dtype,
    load_model,
    prepare_for_training,
    resolve_device,
    resolve_serve_dtype,
    save_model_folder,
)
from services.learner.trainer_state import TrainerState
from services.learner.update import PPOUpdate


class LearnerBrokenError(RuntimeError):
    """An update failed part-way: the in-memory model may be half-updated; reload from a checkpoint."""


class Learner:
    """The policy, its trainer state and its PPO update for one run; `policy_version` counts the updates
    applied, `broken` says why the in-memory model can no longer be trusted (None while it can)."""

    def __init__(
        self,
        model: Any,
        config: LearnerConfig,
        *,
        pad_id: int,
        tokenizer: Any = None,
        device: str | torch.device = "cpu",
        policy_version: int = 0,
        initial_dtype: torch.dtype = torch.float32,
        parallel: DataParallel | None = None,
    ) -> None:
        self.config = config
        self.parallel = parallel
        self.device = resolve_device(device)
        self.model = prepare_for_training(model, config, self.device)
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.policy_version = policy_version
        # The dtype of the Hugging Face folder a checkpoint writes (what vLLM serves); training keeps
        # float32 master weights, stored in the trainer state when the folder is narrower.
        self.serve_dtype = resolve_serve_dtype(config, initial_dtype)
        self.broken: str | None = None
        self.trainer_state = TrainerState(
            self.model, config, self.device, master_weights=self.serve_dtype != torch.float32
        )
        self.ppo = PPOUpdate(
            self.model, config, self.trainer_state, pad_id=pad_id, device=self.device, parallel=parallel
        )

    @property
    def optimizer(self) -> torch.optim.AdamW:
        return self.trainer_state.optimizer

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LambdaLR:
        return self.trainer_state.scheduler

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path,
        config: LearnerConfig,
        device: str | torch.device = "auto",
        policy_version: int = 0,
        parallel: DataParallel | None = None,
    ) -> Learner:
        """The learner of `model_dir`'s weights; in a data-parallel group on the rank's own device."""
        resolved = resolve_device(device)
        if parallel is not None:
            resolved = parallel.local_device(resolved)
        model, tokenizer = load_model(model_dir, resolved)
        return cls(
            model,
            config,
            pad_id=pad_id_of(tokenizer),
            tokenizer=tokenizer,
            device=resolved,
            policy_version=policy_version,
            initial_dtype=folder_dtype(model_dir),
            parallel=parallel,
        )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        config: LearnerConfig,
        device: str | torch.device = "auto",
        parallel: DataParallel | None = None,
    ) -> Learner:
        learner = cls.from_model_dir(
            checkpoint.model_dir, config, device, checkpoint.policy_version, parallel
        )
        learner.trainer_state.load(checkpoint.trainer_state, learner.policy_version)
        return learner

    # ----------------------------------------------------------------------------------------- saving
    def save(
        self,
        store: CheckpointStore,
        *,
        run_id: str,
        step: int,
        metrics: dict[str, float] | None = None,
        samples: list[dict[str, Any]] | None = None,
    ) -> Checkpoint:
        """The current policy version as a checkpoint (atomic; kept as is if it already exists); its
        manifest records the step's metrics and `samples` (JSON records of `anytime.samples`)."""
        if self.broken:
            raise LearnerBrokenError(f"refusing to save a half-updated model: {self.broken}")
        if self.parallel is not None and not self.parallel.is_main:
            raise ValueError(
                f"rank {self.parallel.rank} of a data-parallel learner saves nothing: rank 0 does"
            )
        if self.tokenizer is None:
            raise ValueError("saving a checkpoint needs the tokenizer (use from_model_dir)")

        def write(folder: Path) -> None:
            save_model_folder(self.model, self.tokenizer, folder / MODEL_DIR, self.serve_dtype)
            torch.save(self.trainer_state.state_dict(self.policy_version), folder / TRAINER_STATE)

        manifest = {
            "run_id": run_id,
            "step": step,
            "metrics": metrics or {},
            "samples": samples or [],
            "config": self.config.model_dump(mode="json"),
        }
        return store.save(self.policy_version, write, manifest)

    # ----------------------------------------------------------------------------------------- update
    def step(self, trajectories: Sequence[Trajectory], verdicts: Verdicts) -> dict[str, float]:
        """One update from a step's trajectories and their verdicts (trajectory id → summary id → verdict).

        Everything is checked before the model is touched; a failure during the update marks the learner
        broken (reload it from a checkpoint). Returns the step's metrics; `policy_version` advances by 1.
        """
        if self.broken:
            raise LearnerBrokenError(f"an earlier update failed part-way ({self.broken}); reload the learner")
        started = time.perf_counter()
        batch = build_step_batch(trajectories, verdicts, self.config.brpo, self.config.prior)
        self._check_versions(batch.trajectories)
        metrics = batch_metrics(batch, self.config.brpo, self.config.eval_budgets)
        metrics.update(staleness_metrics(batch.trajectories, self.policy_version))
        if self.parallel is not None:  # every rank must train the same step of the same version
            self.parallel.check_same("the step", (self.policy_version, [t.id for t in batch.trajectories]))
        try:
            stats, timings = self.ppo.run(batch, self.policy_version)
        except BaseException as error:
            self.broken = f"{type(error).__name__}: {error}"
            raise
        self.policy_version += 1
        seconds = time.perf_counter() - started
        metrics.update(stats.as_metrics(self.trainer_state.lr))
        metrics.update(timings)
        metrics["perf/step_s"] = seconds
        metrics["perf/tokens_per_s"] = metrics["batch/tokens"] / seconds
        metrics["policy/version"] = float(self.policy_version)
        return metrics

    def _check_versions(self, trajectories: Sequence[Trajectory]) -> None:
        versions = sorted({t.policy_version for t in trajectories})
        lag = self.policy_version - versions[0]
        if versions[-1] > self.policy_version or lag > self.config.max_staleness:
            raise BatchMismatchError(
                f"the trajectories come from policy versions {versions}, but the learner holds version "
                f"{self.policy_version} and accepts a lag of {self.config.max_staleness}; roll out with the "
                "learner's newest version (or raise max_staleness)"
            )
        if versions[0] < self.policy_version and self.config.temperature != 1.0:
            raise BatchMismatchError(
                f"the trajectories of policy versions {versions} are stale (the learner holds version "
                f"{self.policy_version}): their off-policy correction weighs tokens by π_learner/π_rollout "
                "with the engine's recorded log-probs, which are the untempered (temperature 1) "
                f"distribution's, not those of the sampling policy at temperature {self.config.temperature}; "
                "roll out at temperature 1, or train on-policy (max_staleness 0)"
            )
