"""The learner: one model and its optimizer, kept for a whole run, updated once per rollout step.

`Learner.step(trajectories, verdicts)` is the BRPO (or GRPO) update of DESIGN.md §2.3–2.6:
1. rewards `R[g, j]` from the verdicts, advantages from the core library, per problem group;
2. one packed tree per trajectory (`pack_tree`), grouped into micro-batches under a token budget;
3. old log-probs: a no-grad pass of the current model over the same micro-batches (the paper), or the
   engine's recorded log-probs;
4. PPO-clip over `mini_batches` mini-batches (one AdamW step each, grad-norm clipped), gradients
   accumulated over micro-batches against one normaliser per mini-batch, so the result does not depend on
   how the mini-batch was cut into micro-batches.

Simplifications, stated first: one process (no data parallelism here; README "Learner" sketches
torchrun + FSDP2), one PPO epoch, no reference-policy KL (the paper has none; the config has no knob for
it), no shuffling. A mini-batch in which every trainable token has advantage 0 carries no gradient; it is not
stepped, so decoupled weight decay does not shrink the weights on a step without signal
(`optim/skipped_steps` counts them).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from anytime.brpo.attention import tree_attention_implementation
from anytime.brpo.config import LossAggregation
from anytime.brpo.logprobs import FLEX_BLOCK_SIZE, packed_logprobs
from anytime.brpo.loss import PPOLossConfig, ppo_loss
from anytime.brpo.packing import PackedBatch, collate_trees
from anytime.contracts.learn import LearnerConfig, OldLogProbs
from anytime.trajectory import Trajectory
from services.learner.batch import BatchMismatchError, StepBatch, Verdicts, build_step_batch, rollout_logprobs
from services.learner.checkpoint import MODEL_DIR, TRAINER_STATE, Checkpoint, CheckpointStore
from services.learner.metrics import UpdateStats, batch_metrics
from services.learner.microbatches import plan_microbatches, split_minibatches


class LearnerBrokenError(RuntimeError):
    """An update failed part-way: the in-memory model may be half-updated; reload from a checkpoint."""


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` → CUDA when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def folder_dtype(model_dir: Path) -> torch.dtype:
    """The dtype a model folder declares (`dtype`, or the older `torch_dtype`); float32 when it says none."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{model_dir}/config.json declares an unknown dtype {name!r}")
    return dtype


def load_model(model_dir: Path, device: torch.device) -> tuple[Any, Any]:
    """The model in float32 (master weights) with the tree-attention implementation for `device`, and
    its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    model: Any = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation=tree_attention_implementation(device)
    )
    return model.to(device), AutoTokenizer.from_pretrained(model_dir)


class Learner:
    """Model + AdamW + scheduler for one run; `policy_version` counts the updates applied."""

    def __init__(
        self,
        model: Any,
        config: LearnerConfig,
        *,
        pad_id: int,
        tokenizer: Any = None,
        device: str | torch.device = "cpu",
        policy_version: int = 0,
        serve_dtype: torch.dtype = torch.float32,
    ) -> None:
        dropout = float(getattr(model.config, "attention_dropout", 0.0) or 0.0)
        if dropout > 0:
            raise ValueError(
                f"the model has attention_dropout={dropout}: PPO ratios need the same policy in both passes; "
                "set attention_dropout to 0 in its config.json"
            )
        self.config = config
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.policy_version = policy_version
        # The dtype of the Hugging Face folder a checkpoint writes (what vLLM serves); training keeps
        # float32 master weights, stored alongside when the folder is narrower.
        self.serve_dtype = serve_dtype if config.save_dtype == "auto" else getattr(torch, config.save_dtype)
        self.broken: str | None = None
        cuda = self.device.type == "cuda"
        precision = config.precision if config.precision != "auto" else ("bf16" if cuda else "fp32")
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        checkpointing = config.gradient_checkpointing
        if checkpointing if checkpointing is not None else cuda:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.pad_multiple = FLEX_BLOCK_SIZE if cuda else 1
        if config.pad_to_token_budget:
            self.pad_multiple = -(-config.micro_batch_tokens // self.pad_multiple) * self.pad_multiple
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        warmup = config.warmup_steps

        def lr_factor(step: int) -> float:
            return min(1.0, (step + 1) / warmup) if warmup else 1.0

        self.lr_factor = lr_factor
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.model.train()

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path,
        config: LearnerConfig,
        device: str | torch.device = "auto",
        policy_version: int = 0,
    ) -> Learner:
        resolved = resolve_device(device)
        model, tokenizer = load_model(model_dir, resolved)
        serve_dtype = folder_dtype(model_dir)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(
            model,
            config,
            pad_id=int(pad),
            tokenizer=tokenizer,
            device=resolved,
            policy_version=policy_version,
            serve_dtype=serve_dtype,
        )

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, config: LearnerConfig, device: str | torch.device = "auto"
    ) -> Learner:
        learner = cls.from_model_dir(checkpoint.model_dir, config, device, checkpoint.policy_version)
        learner.load_trainer_state(checkpoint.trainer_state)
        return learner

    # ----------------------------------------------------------------------------------------- state
    def trainer_state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "policy_version": self.policy_version,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
        }
        if self.serve_dtype != torch.float32:  # the model folder is rounded: keep the exact weights here
            state["master_weights"] = {n: p.detach().cpu() for n, p in self.model.named_parameters()}
        return state

    def load_trainer_state(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["policy_version"] != self.policy_version:
            raise ValueError(
                f"{path} is the trainer state of policy version {state['policy_version']}, "
                f"not of the weights' version {self.policy_version}"
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
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def _apply_hyperparameters(self) -> None:
        """The config's lr, betas and weight decay over the ones a loaded optimizer state carries (the same
        values when the run's config did not change; the new ones when it did)."""
        config = self.config
        self.scheduler.base_lrs = [config.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = config.lr
            group["lr"] = config.lr * self.lr_factor(self.scheduler.last_epoch)
            group["betas"] = config.betas
            group["weight_decay"] = config.weight_decay

    def save(
        self, store: CheckpointStore, *, run_id: str, step: int, metrics: dict[str, float] | None = None
    ) -> Checkpoint:
        """The current policy version as a checkpoint (atomic; kept as is if it already exists)."""
        if self.broken:
            raise LearnerBrokenError(f"refusing to save a half-updated model: {self.broken}")
        if self.tokenizer is None:
            raise ValueError("saving a checkpoint needs the tokenizer (use from_model_dir)")

        def write(folder: Path) -> None:
            self.save_model_folder(folder / MODEL_DIR)
            torch.save(self.trainer_state(), folder / TRAINER_STATE)

        manifest = {
            "run_id": run_id,
            "step": step,
            "metrics": metrics or {},
            "config": self.config.model_dump(mode="json"),
        }
        return store.save(self.policy_version, write, manifest)

    def save_model_folder(self, out: Path) -> None:
        """The Hugging Face folder (safetensors, config, tokenizer) in `serve_dtype`: what vLLM loads."""
        dtype = self.serve_dtype
        state = None
        if dtype != torch.float32:
            state = {name: value.detach().to(dtype) for name, value in self.model.state_dict().items()}
        self.model.save_pretrained(out, state_dict=state, safe_serialization=True)
        config_path = out / "config.json"
        config = json.loads(config_path.read_text())
        config["dtype"] = str(dtype).removeprefix("torch.")
        config.pop("torch_dtype", None)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.tokenizer.save_pretrained(out)

    # ----------------------------------------------------------------------------------------- update
    def step(self, trajectories: Sequence[Trajectory], verdicts: Verdicts) -> dict[str, float]:
        """One update from a step's trajectories and their verdicts (trajectory id → summary id → verdict).

        Everything is checked before the model is touched; a failure during the update marks the learner
        broken (reload it from a checkpoint). Returns the step's metrics; `policy_version` advances by 1.
        """
        if self.broken:
            raise LearnerBrokenError(f"an earlier update failed part-way ({self.broken}); reload the learner")
        started = time.perf_counter()
        batch = build_step_batch(trajectories, verdicts, self.config.brpo)
        self._check_versions(batch.trajectories)
        metrics = batch_metrics(batch, self.config.brpo, self.config.eval_budgets)
        try:
            stats, timings = self._update(batch)
        except BaseException as error:
            self.broken = f"{type(error).__name__}: {error}"
            raise
        self.policy_version += 1
        seconds = time.perf_counter() - started
        metrics.update(stats.as_metrics(self.optimizer.param_groups[0]["lr"]))
        metrics.update(timings)
        metrics["perf/step_s"] = seconds
        metrics["perf/tokens_per_s"] = metrics["batch/tokens"] / seconds
        metrics["policy/version"] = float(self.policy_version)
        return metrics

    def _check_versions(self, trajectories: Sequence[Trajectory]) -> None:
        versions = sorted({t.policy_version for t in trajectories})
        lag = self.policy_version - versions[0]
        if versions[-1] > self.policy_version or lag > self.config.max_policy_lag:
            raise BatchMismatchError(
                f"the trajectories come from policy versions {versions}, but the learner holds version "
                f"{self.policy_version} and accepts a lag of {self.config.max_policy_lag}; roll out with the "
                "learner's newest version (or raise max_policy_lag)"
            )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _micro_batches(self, batch: StepBatch) -> list[list[tuple[PackedBatch, list[int]]]]:
        """Per mini-batch: (collated micro-batch on the device, its tree indices)."""
        sizes = [len(g.trajectories) for g in batch.groups]
        plan = []
        for mini in split_minibatches(sizes, self.config.mini_batches):
            lengths = [batch.trees[i].length for i in mini]
            micro = []
            for positions in plan_microbatches(lengths, self.config.micro_batch_tokens):
                ids = [mini[p] for p in positions]
                collated = collate_trees(
                    [batch.trees[i] for i in ids],
                    self.pad_id,
                    multiple_of=self.pad_multiple,
                    max_row_tokens=self.config.micro_batch_tokens,
                )
                micro.append((collated.to(self.device), ids))
            plan.append(micro)
        return plan

    def _old_logprobs(
        self, plan: list[list[tuple[PackedBatch, list[int]]]], batch: StepBatch, stats: UpdateStats
    ) -> list[list[Tensor]]:
        """[N, T] old log-probs per micro-batch: recomputed without grad, or the engine's."""
        old: list[list[Tensor]] = []
        if self.config.old_logprobs is OldLogProbs.ROLLOUT:
            for mini in plan:
                old.append([])
                for micro, ids in mini:
                    values = torch.zeros(micro.shape, dtype=torch.float32)
                    for tree_id, place in zip(ids, micro.placements, strict=True):
                        tree_values = rollout_logprobs(batch.trajectories[tree_id], batch.trees[tree_id])
                        values[place.row, place.offset : place.offset + place.length] = tree_values
                    old[-1].append(values.to(self.device))
            return old
        # The model stays in train mode: the attention dropout is 0 either way, and transformers recompiles
        # its FlexAttention kernel on every train/eval switch.
        with torch.no_grad(), self._autocast():
            for mini in plan:
                old.append([])
                for micro, _ in mini:
                    out = packed_logprobs(self.model, micro, self.config.temperature, with_entropy=True)
                    assert out.entropy is not None
                    stats.add_entropy(float((out.entropy * micro.trainable).sum()))
                    old[-1].append(out.logprobs.float())
        return old

    def _normaliser(self, micro: Sequence[tuple[PackedBatch, list[int]]]) -> float:
        """One denominator for all micro-batches of a mini-batch (DESIGN.md §2.5)."""
        if self.config.brpo.aggregation is LossAggregation.SEQ_SUM_CONST:
            trees = sum(len(ids) for _, ids in micro)
            return float(trees * self.config.brpo.resolved_loss_normalizer)
        return float(max(1, sum(int(m.trainable.sum()) for m, _ in micro)))

    def _update(self, batch: StepBatch) -> tuple[UpdateStats, dict[str, float]]:
        stats = UpdateStats()
        plan = self._micro_batches(batch)
        began = time.perf_counter()
        old = self._old_logprobs(plan, batch, stats)
        old_seconds = time.perf_counter() - began
        loss_config = PPOLossConfig.from_config(self.config.brpo)
        with_entropy = self.config.old_logprobs is OldLogProbs.ROLLOUT
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        began = time.perf_counter()
        for index, (micro, old_logprobs) in enumerate(zip(plan, old, strict=True)):
            normaliser = self._normaliser(micro)
            has_signal = any(bool((m.advantages[m.trainable] != 0).any()) for m, _ in micro)
            self.optimizer.zero_grad(set_to_none=True)
            for (m, _), old_lp in zip(micro, old_logprobs, strict=True):
                with self._autocast():
                    out = packed_logprobs(self.model, m, self.config.temperature, with_entropy=with_entropy)
                result = ppo_loss(
                    out.logprobs,
                    old_lp,
                    m.advantages,
                    m.trainable,
                    loss_config,
                    entropy=out.entropy,
                    normaliser=normaliser,
                )
                result.loss.backward()
                stats.add_microbatch(result.metrics)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip))
            if not math.isfinite(grad_norm):
                raise FloatingPointError(
                    f"non-finite gradient norm in mini-batch {index}; the update was abandoned"
                )
            if has_signal:
                self.optimizer.step()
                self.scheduler.step()
            stats.end_minibatch(grad_norm, has_signal)
        self.optimizer.zero_grad(set_to_none=True)
        update_seconds = time.perf_counter() - began
        tokens = float(sum(tree.length for tree in batch.trees))
        timings = {
            "perf/old_logprobs_s": old_seconds,
            "perf/update_s": update_seconds,
            "perf/update_tokens_per_s": tokens / update_seconds if update_seconds > 0 else 0.0,
            "batch/micro_batches": float(sum(len(mini) for mini in plan)),
            "batch/mini_batches": float(len(plan)),
        }
        return stats, timings
