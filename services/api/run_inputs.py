"""A run's inputs checked at the door: `POST /v1/runs` refuses a config whose model or datasets the
workers could not use, before anything is stored.

`RunConfig` itself stays free of the filesystem (workers re-validate stored configs on other machines);
this module is the one place that looks at the files, from the API's side:

- every path (a dataset, a local model) must lie under a data root (ANYTIME_DATA_ROOTS) once `~`, `..`
  and symlinks are resolved; one that does not gets the same message whether or not it exists, so the
  API cannot be used to probe the filesystem;
- a dataset must be a readable problem set that `anytime.problems.load_problems` (what the workers run)
  reads through its column mapping (`dataset_columns`, `eval_dataset_columns`) without error, and that
  holds at least `problems_per_step` problems (training set); a file that lacks a mapped column is refused
  naming the column, the columns it has and the mapping to set. A `.jsonl`/`.json`/`.parquet` file or a
  Hugging Face dataset folder must lie under the roots; `hf:OWNER/NAME[:SPLIT]` is read from the hub (or
  the API's cache of it), so the API needs the `hf` extra and a network for those;
- a model is a Hugging Face model folder (with a config.json) under the roots, or a hub id such as
  `Qwen/Qwen2.5-1.5B-Instruct` that names nothing on this machine (GPU workers download it);
- with hub inputs turned off (`ANYTIME_API_ALLOW_HUB=false`), a hub model or an `hf:` dataset is refused
  instead, saying so: nothing the run names is downloaded.

Relative paths are taken from the API's working directory, as the workers of the embedded stack take them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi.exceptions import RequestValidationError

from anytime.model_dir import is_hub_id
from anytime.problems import (
    COLUMN_PRESETS,
    HUB_PREFIX,
    Contamination,
    MissingColumnError,
    Problem,
    ProblemColumns,
    ProblemSetError,
    load_problems,
)
from anytime.run_config import RunConfig


@dataclass(frozen=True)
class InputProblem:
    """What is wrong with one field of the config, in words for the 422."""

    field: str
    message: str


@dataclass(frozen=True)
class InputReport:
    """What the door found: every problem with the inputs, and how contaminated the held-out set is
    (None without an evaluation set, or when a dataset could not be read)."""

    problems: list[InputProblem]
    contamination: Contamination | None


def inspect_run_inputs(config: RunConfig, roots: Sequence[Path], hub: bool = True) -> InputReport:
    """Every problem with the config's model and datasets (empty: the workers can use them), and the
    contamination of the evaluation problems the run will evaluate on (the first `eval_problems` of the
    evaluation set, as the driver cuts it). `roots` are resolved folders
    (`ApiSettings.resolved_data_roots`); `hub` false refuses hub models and datasets
    (`ApiSettings.allow_hub`)."""
    problems: list[InputProblem] = []
    model = _model_problem(config.model, roots, hub)
    if model is not None:
        problems.append(InputProblem("model", model))
    train = _load_dataset("dataset", config.dataset, config.dataset_columns, roots, problems, hub)
    if train is not None and config.problems_per_step > len(train):
        problems.append(
            InputProblem(
                "problems_per_step",
                f"problems_per_step is {config.problems_per_step} but the training dataset "
                f"{config.dataset} holds {len(train)} problems; lower it to at most {len(train)}",
            )
        )
    contamination = None
    if config.evaluation.dataset is not None:
        held_out = _load_dataset(
            "eval_dataset", config.evaluation.dataset, config.evaluation.dataset_columns, roots, problems, hub
        )
        if train is not None and held_out is not None:
            evaluated = held_out[: config.evaluation.problems]
            contamination = Contamination.measure(train, evaluated)
    return InputReport(problems, contamination)


def require_run_inputs(config: RunConfig, roots: Sequence[Path], hub: bool = True) -> Contamination | None:
    """`inspect_run_inputs`, its problems raised as the 422 FastAPI gives a bad body (one entry per
    field); the contamination of usable inputs returned."""
    report = inspect_run_inputs(config, roots, hub)
    problems = report.problems
    if problems:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", problem.field),
                    "msg": problem.message,
                    "input": config.flat()[problem.field],
                }
                for problem in problems
            ]
        )
    return report.contamination


def outside_roots_message(field: str, roots: Sequence[Path]) -> str:
    """The one answer for a path outside the roots, whatever is (or is not) there."""
    return (
        f"{field} must be a path under the data roots ({', '.join(str(r) for r in roots)}); "
        "put the file there or add its folder to ANYTIME_DATA_ROOTS"
    )


def _under_roots(text: str, roots: Sequence[Path]) -> Path | None:
    """The path with `~`, `..` and symlinks resolved if it lies under a root; None otherwise."""
    try:
        resolved = Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a symlink loop, an unknown ~user
        return None
    return resolved if any(resolved.is_relative_to(root) for root in roots) else None


HUB_OFF = "this API takes no hub inputs (ANYTIME_API_ALLOW_HUB=false)"


def _model_problem(text: str, roots: Sequence[Path], hub: bool) -> str | None:
    if is_hub_id(text):
        if hub:
            return None
        return f"model {text} is a hub id, and {HUB_OFF}: put the model folder under a data root and name it"
    path = _under_roots(text, roots)
    if path is None:
        return outside_roots_message("model", roots) + " (or a hub id such as Qwen/Qwen2.5-1.5B-Instruct)"
    config = path / "config.json"
    if not path.exists():
        return f"model folder {text} does not exist"
    if not path.is_dir() or not config.is_file():
        return f"model {text} is not a Hugging Face model folder (a folder with a config.json)"
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except PermissionError:
        return f"model {text}: config.json is not readable by the API"
    except (OSError, ValueError) as err:
        return f"model {text}: config.json is not valid JSON ({err})"
    if not isinstance(parsed, dict):
        return f"model {text}: config.json is not a JSON object"
    return None


def _load_dataset(
    field: str,
    text: str,
    columns: ProblemColumns,
    roots: Sequence[Path],
    problems: list[InputProblem],
    hub: bool = True,
) -> list[Problem] | None:
    """The problems in the dataset, or None with what is wrong appended to `problems` (under `field`).
    A hub dataset is no path: it is read from the hub (or this machine's cache of it), as the driver will."""
    if text.startswith(HUB_PREFIX) and not hub:
        refusal = f"{field} {text} is a hub dataset, and {HUB_OFF}: save it under a data root and name it"
        problems.append(InputProblem(field, refusal))
        return None
    path = None if text.startswith(HUB_PREFIX) else _under_roots(text, roots)
    message = None if text.startswith(HUB_PREFIX) else _dataset_path_problem(field, text, path, roots)
    if message is None:
        try:
            return load_problems(text if path is None else path, columns)
        except MissingColumnError as err:
            message = (
                f"{field}: {err}; map the file's columns with {field}_columns (a preset: "
                f"{', '.join(COLUMN_PRESETS)}; or {{problem: COLUMN, answer: COLUMN}})"
            )
        except ProblemSetError as err:
            message = f"{field}: {err}"
        except UnicodeDecodeError:
            message = f"{field} {text} is not UTF-8 text"
        except (OSError, RecursionError) as err:
            message = f"{field} {text} cannot be read ({type(err).__name__}: {err})"
    problems.append(InputProblem(field, message))
    return None


def _dataset_path_problem(field: str, text: str, path: Path | None, roots: Sequence[Path]) -> str | None:
    """What keeps the API from reading a dataset path (`path`: resolved under the roots, or None)."""
    if path is None:
        return outside_roots_message(field, roots)
    if not path.exists():
        return f"{field} {text} does not exist"
    if not (path.is_file() or path.is_dir()):
        return (
            f"{field} {text} is not a file (a .jsonl, .json or .parquet list of problems) or a dataset folder"
        )
    if not os.access(path, os.R_OK):
        return f"{field} {text} is not readable by the API"
    return None
