"""Hugging Face model folders: written atomically (a staging folder renamed into place), and told apart
from hub ids.

A crash mid-write leaves `<out>.partial`, never a folder at `out` that looks complete.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

# `org/name` on the Hugging Face hub; a name with a slash that exists locally is a path instead.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PATH_STARTS = ("/", "./", "../", "~")


def is_hub_id(text: str) -> bool:
    """Whether a model name is a hub id (`org/name`, downloaded by whoever loads it) rather than a path:
    shaped like one, not written as a path, and naming nothing on this machine."""
    if text.startswith(_PATH_STARTS) or not HUB_ID.match(text):
        return False
    try:
        return not os.path.lexists(text)
    except ValueError:
        return False


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
