"""Data parallelism for the learner: N processes, each with the whole model, each a share of every mini-batch.

Replicated data parallelism (DDP's scheme), not FSDP2, because the models this platform trains fit on one
GPU: the paper's 1.5B model with float32 master weights, gradients and AdamW moments is 16 bytes/parameter
= 24 GB plus activations, well inside 80 GB, and replication is the simplest scheme to make exactly equal to
one process (every rank ends each optimizer step with the same summed gradient and takes the same AdamW
step). The paper's 7B model does not fit that way (112 GB of float32 state): it needs the parameters and
optimizer state sharded, FSDP2's `fully_shard` per decoder layer (docs/architecture.md "Several GPUs"); the
gradient reduction below is the one seam that changes then.

The scheme, exact up to float summation order (a 2-process CPU run matches the single process within 1e-5
after 3 steps, tests/integration/test_learner_distributed.py):
- every rank builds the same `StepBatch` from the same trajectories (advantages need whole problem groups)
  and the same mini-batch plan; each takes a contiguous, token-balanced share of every mini-batch's trees
  (`share`), plans its own micro-batches from them and recomputes old log-probs for those only;
- the loss normaliser is the mini-batch's over ALL ranks' trees (every rank can count them), so the sum of
  the ranks' gradients is the single-process gradient: `reduce_gradients` all-reduces with SUM, then every
  rank clips the same global norm and takes the same optimizer step;
- statistics are gathered and merged on every rank (`gather`); rank 0 writes the checkpoints.

Why explicit all-reduces and not the `DistributedDataParallel` wrapper: ranks hold different numbers of
micro-batches (whole trees under a token budget; a rank may hold none of a small mini-batch), which the
wrapper's per-backward hooks would need `no_sync` and `join` for; its parameter names gain a `module.`
prefix the checkpoints would have to strip; and its overlap of communication with backward buys little here,
with one reduction per optimizer step and two optimizer steps per rollout step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


class GroupMismatchError(RuntimeError):
    """The ranks disagree about the step (another version, other trajectories) or one of them failed."""


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the learner's data-parallel group (the default torch.distributed group).

    objects: a gloo group for pickled objects (the default group is NCCL's on CUDA); None: the default.
    """

    rank: int
    world_size: int
    objects: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """Rank r's device: `cuda:{index + r}` for a CUDA base device, the CPU as it is."""
        if device.type != "cuda":
            return device
        local = torch.device("cuda", (device.index or 0) + self.rank)
        torch.cuda.set_device(local)
        return local

    def share(self, trees: Sequence[int], lengths: Sequence[int]) -> list[int]:
        """This rank's trees of a mini-batch: a contiguous run, cut where the tokens split evenly (a tree
        belongs to the rank its middle token falls in; a rank may get none)."""
        total = sum(lengths)
        mine, before = [], 0
        for tree, length in zip(trees, lengths, strict=True):
            owner = min(self.world_size - 1, (2 * before + length) * self.world_size // (2 * max(total, 1)))
            if owner == self.rank:
                mine.append(tree)
            before += length
        return mine

    def reduce_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks, in place. A rank without micro-batches has no
        gradients (None) and adds zeros; a parameter no rank has a gradient for keeps None, as it would in
        one process (so AdamW skips it alike)."""
        device = parameters[0].device if parameters else torch.device("cpu")
        present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.int32, device=device)
        dist.all_reduce(present, op=dist.ReduceOp.MAX)
        for parameter, any_rank in zip(parameters, present.tolist(), strict=True):
            if not any_rank:
                continue
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value, group=self.objects)
        return gathered

    def check_same(self, what: str, value: Any) -> None:
        """Raise `GroupMismatchError` on every rank unless all ranks hold the same `value`."""
        values = self.gather(value)
        if any(v != values[0] for v in values):
            raise GroupMismatchError(
                f"the learner's ranks disagree about {what}: {_short(values)}; every rank must train the "
                "same step of the same version (restart the learner group)"
            )

    def check_ready(self, error: BaseException | None) -> None:
        """A barrier that fails on every rank when any rank failed to get ready (e.g. to load its learner):
        the failing rank re-raises its own error, the others raise `GroupMismatchError` naming it."""
        errors = self.gather(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = {rank: message for rank, message in enumerate(errors) if message is not None}
        if failed:
            raise GroupMismatchError(f"learner rank(s) failed to get ready: {failed}")


def _short(values: Iterable[Any]) -> str:
    text = repr(list(values))
    return text if len(text) <= 300 else text[:300] + "…"


def backend_for(device_type: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device_type == "cuda" else "gloo"


def init_data_parallel(
    rank: int, world_size: int, store: dist.Store, *, device_type: str, timeout_s: float
) -> DataParallel:
    """Join the learner's process group (all ranks call this, rendezvous through `store`): a TCPStore on
    rank 0 for the worker's group, a FileStore in tests. `timeout_s` bounds every collective."""
    timeout = timedelta(seconds=timeout_s)
    backend = backend_for(device_type)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    objects = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    return DataParallel(rank, world_size, objects)


def close_data_parallel() -> None:
    """Leave the process group (when there is one)."""
    if dist.is_initialized():
        dist.destroy_process_group()
