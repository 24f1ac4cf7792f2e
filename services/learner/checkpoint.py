"""Checkpoints as policy versions: atomic folders with a manifest, verified on load, pruned by retention.

Layout under a run's checkpoint root:

    policy-000007/
      model/              Hugging Face folder (safetensors, config, tokenizer): what vLLM and the rollout load
      trainer_state.pt    optimizer, scheduler and RNG state
      MANIFEST.json       written last: version, run, step, metrics, and size + sha256 of every file above
    .partial-policy-000008-<id>/   a save in progress (or one a crash interrupted): never read

A save writes everything into a `.partial-…` folder, fsyncs it, writes the manifest, and renames the folder
into place, so a crash never leaves a `policy-…` folder that looks complete. On load, a folder without a
manifest, or whose files do not match it (truncated, edited, missing), is reported and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from anytime.logging import get_logger

MANIFEST = "MANIFEST.json"
MODEL_DIR = "model"
TRAINER_STATE = "trainer_state.pt"
FORMAT_VERSION = 1
_NAME = re.compile(r"^policy-(\d{6,})$")
_CHUNK = 1 << 20

Verification = Literal["size", "sha256"]
logger = get_logger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that should be there is missing, incomplete or corrupted."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: its folder and manifest."""

    path: Path
    manifest: Mapping[str, Any]

    @property
    def policy_version(self) -> int:
        return int(self.manifest["policy_version"])

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def trainer_state(self) -> Path:
        return self.path / TRAINER_STATE

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.manifest.get("metrics", {}))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


class CheckpointStore:
    """The policy versions of one run under `root`, newest last."""

    def __init__(self, root: Path, keep_last: int = 3, keep_every: int | None = None) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 (the newest is always kept); got {keep_last}")
        self.root = Path(root)
        self.keep_last = keep_last
        self.keep_every = keep_every

    def path_of(self, policy_version: int) -> Path:
        return self.root / f"policy-{policy_version:06d}"

    def versions(self) -> list[int]:
        """Versions with a `policy-…` folder (complete or not), ascending."""
        if not self.root.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.root.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def problem(self, policy_version: int, verify: Verification = "sha256") -> str | None:
        """Why the checkpoint of `policy_version` cannot be used, or None when it is complete and intact."""
        path = self.path_of(policy_version)
        if not path.is_dir():
            return f"{path} does not exist"
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            return f"{path} has no {MANIFEST}: a save did not finish"
        except (OSError, ValueError) as error:
            return f"{path}/{MANIFEST} is unreadable: {error}"
        if manifest.get("format") != FORMAT_VERSION or manifest.get("policy_version") != policy_version:
            return f"{path}/{MANIFEST} is not a version-{FORMAT_VERSION} manifest of policy {policy_version}"
        listed: dict[str, dict[str, Any]] = manifest.get("files", {})
        present = {p.relative_to(path).as_posix() for p in _files(path)}
        if missing := sorted(set(listed) - present):
            return f"{path} lacks files its manifest lists: {missing[:3]}"
        for name, record in listed.items():
            file = path / name
            if file.stat().st_size != record["size"]:
                return f"{file} has {file.stat().st_size} bytes, the manifest says {record['size']}"
            if verify == "sha256" and _sha256(file) != record["sha256"]:
                return f"{file} does not match its sha256 in the manifest (corrupted)"
        return None

    def get(self, policy_version: int, verify: Verification = "sha256") -> Checkpoint | None:
        """The complete checkpoint of `policy_version`, or None (missing, half-written or corrupted)."""
        reason = self.problem(policy_version, verify)
        if reason is not None:
            return None
        path = self.path_of(policy_version)
        return Checkpoint(path, json.loads((path / MANIFEST).read_text()))

    def require(self, policy_version: int, verify: Verification = "sha256") -> Checkpoint:
        reason = self.problem(policy_version, verify)
        if reason is not None:
            latest = self.latest(verify="size")
            raise CheckpointError(
                f"cannot use policy version {policy_version}: {reason}; the newest complete version is "
                f"{latest.policy_version if latest else 'none'} — re-run the steps after it"
            )
        checkpoint = self.get(policy_version, verify="size")
        assert checkpoint is not None
        return checkpoint

    def latest(self, verify: Verification = "sha256") -> Checkpoint | None:
        """The newest complete, intact checkpoint; newer broken ones are logged and skipped."""
        for version in reversed(self.versions()):
            reason = self.problem(version, verify)
            if reason is None:
                return self.get(version, verify="size")
            logger.warning("skipping an incomplete checkpoint", policy_version=version, reason=reason)
        return None

    def save(
        self, policy_version: int, write: Callable[[Path], None], manifest: Mapping[str, Any]
    ) -> Checkpoint:
        """Write a checkpoint atomically: `write(folder)` fills a staging folder, then it is renamed.

        A complete checkpoint of this version that is already there is kept (a step that ran twice),
        and returned; a broken one is moved aside to `.broken-…` and replaced.
        """
        existing = self.get(policy_version, verify="sha256")  # hashes only when the version exists
        if existing is not None:
            return existing
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_partials()
        staging = self.root / f".partial-policy-{policy_version:06d}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            write(staging)
            files = {}
            for file in _files(staging):
                _fsync(file)
                files[file.relative_to(staging).as_posix()] = {
                    "size": file.stat().st_size,
                    "sha256": _sha256(file),
                }
            record = {
                **manifest,
                "format": FORMAT_VERSION,
                "policy_version": policy_version,
                "created": time.time(),
                "files": files,
            }
            tmp = staging / (MANIFEST + ".tmp")
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
            _fsync(tmp)
            tmp.rename(staging / MANIFEST)
            for folder in [*(p for p in staging.rglob("*") if p.is_dir()), staging]:
                _fsync(folder)
            final = self.path_of(policy_version)
            if final.exists():
                final.rename(self.root / f".broken-{final.name}-{uuid.uuid4().hex[:8]}")
            staging.rename(final)
            _fsync(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.prune()
        checkpoint = self.get(policy_version, verify="size")
        assert checkpoint is not None
        return checkpoint

    def _remove_stale_partials(self) -> None:
        # One learner writes a run's checkpoints: any staging folder left is from a crashed save.
        for path in self.root.glob(".partial-policy-*"):
            shutil.rmtree(path, ignore_errors=True)

    def prune(self) -> list[int]:
        """Delete checkpoints older than the newest `keep_last` complete ones (keeping every
        `keep_every`-th version); returns the deleted versions. Broken folders newer than that are kept
        for inspection."""
        complete = [v for v in self.versions() if self.problem(v, verify="size") is None]
        if len(complete) <= self.keep_last:
            return []
        oldest_kept = complete[-self.keep_last]
        deleted = []
        for version in self.versions():
            if version >= oldest_kept:
                continue
            if self.keep_every and version % self.keep_every == 0 and version in complete:
                continue
            shutil.rmtree(self.path_of(version), ignore_errors=True)
            deleted.append(version)
        return deleted
