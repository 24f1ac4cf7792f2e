"""Experiment tracking: one MLflow run per training run, metrics by policy version, plots as artifacts.

`MlflowTracker` talks to a store or server through `MlflowClient` (no process-global active run, so several
runs can be tracked from one process); `LazyMlflowTracker` makes one on first use (the API's, which starts
without MLflow); `NullTracker` does nothing, for tests and for runs without tracking.
Metric names are slash-namespaced and MLflow-legal (`reward/budget_64/mean`, `Eval/accuracy/budget_64`).

What a run shows in MLflow (the run driver logs it):
- params: the config as it runs (`anytime.run_plan.resolved_params`: S, A, baseline, prior, … filled in), the
  config as written in the `config.json` artifact;
- metrics: training metrics by policy version, and the evaluations' `Eval/…` metrics (named by
  `EvalResult.metrics`); `curves/eval_v<version>.png` per evaluation, and `curves/start_vs_end.png` (the
  first and last policy with their bands) from the second evaluation on;
- the experiment is tagged a training experiment (`TRAINING_KIND`); `experiment_url` links its runs.

Metric order in the UI: MLflow 3.17 sorts chart sections and metric tables by name (JavaScript's
code-point order: `advantage` < `anytime` < `batch` < `eval`), and keeps a reordered or saved chart layout
in the browser's local storage only; its server-side "custom views" (experiment tags
`mlflow.customView.view.v1.*`) lay out traces, not metrics. So no tag or server setting puts evaluation
first; only the names can, and an uppercase or digit first character sorts before every lowercase one. The
tracker does not rename what it is given (a metric with two names is two to keep in step): a name that
sorts first belongs where the names are made, `EvalResult.metrics`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anytime.curve_plot import EvaluatedPolicy

EXPERIMENT = "anytime"
# MLflow 3's experiment kind: its UI opens a `genai_development` experiment on Traces and a
# `custom_model_development` one ("Machine learning") on its runs. 3.17's UI takes the kind from its
# workflow switch (kept in the browser, default GenAI) rather than from this tag, so `experiment_url` also
# carries the switch's URL parameter; the tag records the kind for the UIs and clients that read it.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
START_VS_END = "curves/start_vs_end.png"
_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-. /:]")
MAX_PARAM_CHARS = 6000


class Tracker(Protocol):
    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None: ...
    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None: ...
    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None: ...
    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None: ...
    def log_table(self, run: str | None, columns: Mapping[str, list[Any]], artifact_file: str) -> None: ...
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

    def log_table(self, run: str | None, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
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
        if found is None:
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=artifact_root, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND}
            )
        else:
            self.experiment_id = found.experiment_id
            if EXPERIMENT_KIND_TAG not in found.tags:  # a store made before the tag: mark it once
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)

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

    def log_table(self, run: str | None, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
        """A table artifact (`MlflowClient.log_table`): the run's page lists it under Artifacts and shows
        it as a table, and the experiment's Evaluation view compares it across runs."""
        if run is not None:
            self.client.log_table(run, data=dict(columns), artifact_file=artifact_file)

    def end_run(self, run: str | None, status: str) -> None:
        if run is not None:
            self.client.set_terminated(run, status=status)


class LazyMlflowTracker:
    """An `MlflowTracker` made on first use, so a process starts (the API serves runs) without MLflow."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._tracker: Tracker | None = None
        self._lock = threading.Lock()

    def _get(self) -> Tracker:
        with self._lock:
            if self._tracker is None:
                self._tracker = MlflowTracker(self.tracking_uri)
            return self._tracker

    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
        return self._get().start_run(name, params, tags)

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        self._get().log_metrics(run, metrics, step)

    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None:
        self._get().log_dict(run, data, artifact_file)

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        self._get().log_png(run, png, artifact_file)

    def log_table(self, run: str | None, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
        self._get().log_table(run, columns, artifact_file)

    def end_run(self, run: str | None, status: str) -> None:
        self._get().end_run(run, status)


def log_start_vs_end(
    tracker: Tracker, run: str | None, evaluations: Sequence[EvaluatedPolicy], title: str
) -> bool:
    """Log `curves/start_vs_end.png` (the first and the last evaluated policy, with their 95 % bands) once a
    run has two evaluations or more, replacing the previous one; whether it was logged."""
    if run is None or len(evaluations) < 2:
        return False
    from anytime.curve_plot import accuracy_vs_budget_png, start_vs_end_series

    png = accuracy_vs_budget_png(start_vs_end_series(evaluations), f"{title}: start vs end")
    tracker.log_png(run, png, START_VS_END)
    return True


def experiment_url(server_url: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs in its training ("Machine learning") view."""
    return f"{server_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def initialise_store(tracking_uri: str, artifact_root: str | None = None) -> str:
    """Create the store's schema and the `anytime` experiment once, before any other process uses it
    (MLflow creates a SQLite store's tables on first use: two processes doing that at once collide)."""
    return MlflowTracker(tracking_uri, artifact_root).experiment_id


if __name__ == "__main__":  # `python -m anytime.tracking STORE_URI [ARTIFACT_ROOT]`: the stack's one-shot
    import sys

    initialise_store(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
