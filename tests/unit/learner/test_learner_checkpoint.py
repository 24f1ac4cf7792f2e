"""Checkpoints: atomic saves, half-written and corrupted folders detected and skipped, retention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.learner.checkpoint import MANIFEST, CheckpointError, CheckpointStore


def _writer(payload: str):
    def write(folder: Path) -> None:
        (folder / "model").mkdir()
        (folder / "model" / "weights.bin").write_text(payload * 100)
        (folder / "trainer_state.pt").write_text("state " + payload)

    return write


def _save(store: CheckpointStore, version: int) -> None:
    store.save(version, _writer(f"v{version}"), {"run_id": "r", "step": version - 1, "metrics": {"x": 1.0}})


def _latest(store: CheckpointStore) -> int | None:
    checkpoint = store.latest()
    return None if checkpoint is None else checkpoint.policy_version


def test_save_is_complete_with_a_manifest_and_leaves_no_staging(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    checkpoint = store.save(1, _writer("a"), {"run_id": "r", "step": 0, "metrics": {"loss/policy": 0.5}})
    assert checkpoint.path == tmp_path / "policy-000001" and checkpoint.policy_version == 1
    assert checkpoint.model_dir == checkpoint.path / "model"
    assert checkpoint.metrics == {"loss/policy": 0.5}
    manifest = json.loads((checkpoint.path / MANIFEST).read_text())
    assert set(manifest["files"]) == {"model/weights.bin", "trainer_state.pt"}
    assert manifest["run_id"] == "r" and manifest["step"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["policy-000001"]
    assert store.latest() == checkpoint


def test_a_crash_during_the_write_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    _save(store, 1)

    def crash(folder: Path) -> None:
        _writer("b")(folder)
        raise KeyboardInterrupt  # the process is stopped mid-save

    with pytest.raises(KeyboardInterrupt):
        store.save(2, crash, {"run_id": "r", "step": 1})
    latest = store.latest()
    assert store.versions() == [1] and latest is not None and latest.policy_version == 1


def test_half_written_and_corrupted_checkpoints_are_detected_and_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=10)
    for version in (1, 2, 3, 4):
        _save(store, version)
    # A staging folder from a killed process, and a version folder without a manifest (a copy cut short).
    partial = tmp_path / ".partial-policy-000005-dead"
    partial.mkdir()
    _writer("c")(partial)
    (tmp_path / "policy-000005").mkdir()
    _writer("c")(tmp_path / "policy-000005")
    # Version 4: a byte flipped, same size (only the hash sees it); version 3: a truncated file.
    weights = tmp_path / "policy-000004" / "model" / "weights.bin"
    weights.write_text("X" + weights.read_text()[1:])
    state = tmp_path / "policy-000003" / "trainer_state.pt"
    state.write_text(state.read_text()[:-2])

    assert "no MANIFEST.json" in str(store.problem(5))
    assert "sha256" in str(store.problem(4)) and store.problem(4, verify="size") is None
    assert "bytes" in str(store.problem(3))
    assert _latest(store) == 2
    with pytest.raises(
        CheckpointError, match=r"cannot use policy version 3: .* newest complete version is 4"
    ):
        store.require(3)  # a size check finds 4 complete; the sha256 check before loading it would not
    # Saving version 5 again replaces the incomplete folder (moved aside) and cleans the stale staging.
    _save(store, 5)
    assert store.problem(5) is None and not partial.exists()
    assert any(p.name.startswith(".broken-policy-000005") for p in tmp_path.iterdir())
    _save(store, 4)  # the flipped byte passes a size check, yet a save must not keep that version
    assert store.problem(4) is None and _latest(store) == 5


def test_an_existing_complete_version_is_kept_and_not_rewritten(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    _save(store, 1)

    def must_not_run(folder: Path) -> None:
        raise AssertionError("a complete version was written twice")

    again = store.save(1, must_not_run, {"run_id": "r", "step": 0})
    assert again.manifest["step"] == 0


def test_retention_keeps_the_newest_and_every_kth(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2, keep_every=3)
    for version in range(1, 8):
        _save(store, version)
    assert store.versions() == [3, 6, 7]
    plain = CheckpointStore(tmp_path / "plain", keep_last=1)
    for version in range(1, 4):
        _save(plain, version)
    assert plain.versions() == [3]
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointStore(tmp_path, keep_last=0)
