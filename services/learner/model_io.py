"""Model I/O: the policy in from a Hugging Face folder, onto its device, and out to the folder vLLM serves.

- In: `load_model` reads float32 master weights with the tree-attention implementation for the device
  (`anytime.brpo.attention`) and the tokenizer; `folder_dtype` is the dtype the folder declares, which
  `resolve_serve_dtype` keeps for the checkpoints unless the config names another.
- On the device: `prepare_for_training` refuses attention dropout (PPO ratios need one policy in both
  passes) and turns gradient checkpointing on where the config asks (by default on CUDA).
- Out: `save_model_folder` writes safetensors, config and tokenizer in the serving dtype.

The checkpoint around that folder (manifest, atomic rename, retention) is `checkpoint`'s; the optimizer,
RNG and float32 master weights beside it are `trainer_state`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from anytime.brpo.attention import tree_attention_implementation
from anytime.contracts.learn import LearnerConfig


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


def resolve_serve_dtype(config: LearnerConfig, initial: torch.dtype) -> torch.dtype:
    """The dtype the checkpoints' model folder is written in: `config.save_dtype`, or with `auto` the
    initial model folder's (`initial`). Training keeps float32 master weights either way."""
    if config.save_dtype == "auto":
        return initial
    dtype: torch.dtype = getattr(torch, config.save_dtype)
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


def prepare_for_training(model: Any, config: LearnerConfig, device: torch.device) -> Any:
    """`model` on `device`, in train mode, with gradient checkpointing when the config (or, unset, CUDA)
    asks for it; a model with attention dropout is refused."""
    dropout = float(getattr(model.config, "attention_dropout", 0.0) or 0.0)
    if dropout > 0:
        raise ValueError(
            f"the model has attention_dropout={dropout}: PPO ratios need the same policy in both passes; "
            "set attention_dropout to 0 in its config.json"
        )
    model = model.to(device)
    checkpointing = config.gradient_checkpointing
    if checkpointing if checkpointing is not None else device.type == "cuda":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def save_model_folder(model: Any, tokenizer: Any, out: Path, dtype: torch.dtype) -> None:
    """The Hugging Face folder (safetensors, config, tokenizer) in `dtype`: what vLLM loads."""
    state = None
    if dtype != torch.float32:
        state = {name: value.detach().to(dtype) for name, value in model.state_dict().items()}
    model.save_pretrained(out, state_dict=state, safe_serialization=True)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = str(dtype).removeprefix("torch.")
    config.pop("torch_dtype", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(out)
