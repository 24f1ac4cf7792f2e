"""Trainer state: what a run's learner carries from step to step besides the served weights.

`TrainerState` owns the AdamW optimizer over the model's parameters and its learning-rate schedule (linear
warm-up, then constant), and their file in a checkpoint (`trainer_state.pt`):

    policy_version   the version of the weights this state belongs to (checked on load)
    optimizer        AdamW moments and step counts
    scheduler        the schedule's position
    rng              torch, Python and (on CUDA) CUDA generator states
    master_weights   the exact float32 parameters, only when the served folder is narrower (bf16, fp16)

Resuming builds a learner from the checkpoint's model folder, then `load` puts this file over it: the
master weights replace the rounded ones, and the run's config wins over the lr, betas and weight decay
stored with the optimizer (the same values unless the run's config changed).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from anytime.contracts.learn import LearnerConfig


def warmup_factor(warmup_steps: int) -> Callable[[int], float]:
    """The lr multiplier after `step` scheduler steps: `(step + 1) / warmup_steps` up to 1, then 1."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0

    return factor


class TrainerState:
    """AdamW + warm-up schedule over `model`'s parameters, and their save/resume."""

    def __init__(
        self, model: torch.nn.Module, config: LearnerConfig, device: torch.device, *, master_weights: bool
    ) -> None:
        self.model = model
        self.config = config
        self.cuda = device.type == "cuda"
        self.master_weights = master_weights
        self.optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        self.lr_factor = warmup_factor(config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self, policy_version: int) -> dict[str, Any]:
        """What `trainer_state.pt` holds for the weights of `policy_version` (see the module docstring)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.cuda:
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "policy_version": policy_version,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
        }
        if self.master_weights:  # the model folder is rounded: keep the exact weights here
            state["master_weights"] = {n: p.detach().cpu() for n, p in self.model.named_parameters()}
        return state

    def load(self, path: Path, policy_version: int) -> None:
        """Resume from `path`, the trainer state saved with the weights of `policy_version`."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["policy_version"] != policy_version:
            raise ValueError(
                f"{path} is the trainer state of policy version {state['policy_version']}, "
                f"not of the weights' version {policy_version}"
            )
        if "master_weights" in state:
            master = state["master_weights"]
            names = [name for name, _ in self.model.named_parameters()]
            if sorted(master) != sorted(names):
                raise ValueError(f"{path} holds master weights of another model (parameter names differ)")
            with torch.no_grad():
                for name, parameter in self.model.named_parameters():
                    parameter.copy_(master[name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_hyperparameters()
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if "cuda" in state["rng"] and self.cuda:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def _apply_hyperparameters(self) -> None:
        """The config's lr, betas and weight decay over the ones a loaded optimizer state carries."""
        config = self.config
        self.scheduler.base_lrs = [config.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = config.lr
            group["lr"] = config.lr * self.lr_factor(self.scheduler.last_epoch)
            group["betas"] = config.betas
            group["weight_decay"] = config.weight_decay
