"""Experiment tracking: one MLflow run per training run, metrics by policy version, plots as artifacts.

`MlflowTracker` talks to a store or server through `MlflowClient` (no process-global active run, so several
runs can be tracked from one process); `NullTracker` does nothing, for tests and for runs without tracking.
Metric names are slash-namespaced and MLflow-legal (`reward/budget_64/mean`, `eval/accuracy/budget_64`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Protocol

EXPERIMENT = "anytime"
_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-. /:]")
MAX_PARAM_CHARS = 6000


class Tracker(Protocol):
    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None: ...
    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None: ...
    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None: ...
    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None: ...
    def end_run(self, run: str | None, status: str) -> None: ...


class NullTracker:
    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
        return None

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        pass

    def end_run(self, run: str | None, status: str) -> None:
        pass


def metric_name(name: str) -> str:
    """An MLflow-legal metric name: characters outside [A-Za-z0-9_-. /:] become `_`."""
    return _ILLEGAL.sub("_", name)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → `a.b` keys with string values (lists joined by commas), as MLflow params want."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = ",".join(str(v) for v in value)[:MAX_PARAM_CHARS]
        else:
            flat[name] = str(value)[:MAX_PARAM_CHARS]
    return flat


class MlflowTracker:
    def __init__(
        self, tracking_uri: str, artifact_root: str | None = None, experiment: str = EXPERIMENT
    ) -> None:
        """`artifact_root` places a new experiment's artifacts (a folder URI for a local store; a server
        chooses its own when unset)."""
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location=artifact_root)
        )

    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, tags=dict(tags), run_name=name)
        flat = flatten_params(params)
        items = [Param(k, v) for k, v in sorted(flat.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run.info.run_id, params=items[start : start + 100])
        return str(run.info.run_id)

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        if run is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(metric_name(k), float(v), now, step) for k, v in sorted(metrics.items())]
        for start in range(0, len(items), 1000):
            self.client.log_batch(run, metrics=items[start : start + 1000])

    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None:
        if run is not None:
            self.client.log_dict(run, dict(data), artifact_file)

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        if run is None:
            return
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(png)
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(run, str(path), None if parent == "." else parent)

    def end_run(self, run: str | None, status: str) -> None:
        if run is not None:
            self.client.set_terminated(run, status=status)


def initialise_store(tracking_uri: str, artifact_root: str | None = None) -> str:
    """Create the store's schema and the `anytime` experiment once, before any other process uses it
    (MLflow creates a SQLite store's tables on first use: two processes doing that at once collide)."""
    return MlflowTracker(tracking_uri, artifact_root).experiment_id


if __name__ == "__main__":  # `python -m anytime.tracking STORE_URI [ARTIFACT_ROOT]`: the stack's one-shot
    import sys

    initialise_store(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
