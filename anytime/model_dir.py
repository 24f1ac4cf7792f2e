"""Writing a Hugging Face model folder atomically: a staging folder renamed into place.

A crash mid-write leaves `<out>.partial`, never a folder at `out` that looks complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def save_model_dir(model: Any, tokenizer: Any, out: Path, extra_files: dict[str, str] | None = None) -> Path:
    """Save weights (safetensors), config, generation config and tokenizer to `out`, replacing it."""
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    for name, text in (extra_files or {}).items():
        (staging / name).write_text(text)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out
