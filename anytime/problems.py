"""Problem sets on disk: JSON lists (as in ../shared/data) or JSON lines (as `anytime data synth` writes).

Every record has `problem` and `answer`; `id` and `trace` are optional. Other keys are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Answer = str | int | float | list[str | int | float]


class Problem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    problem: str
    answer: Answer
    trace: str | None = None


class Contamination(BaseModel):
    """How many of a run's evaluation problems also appear in its training dataset (the same problem text,
    whitespace and case aside): held-out scores mean nothing for those."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eval_problems: int = Field(ge=0, description="Evaluation problems the run evaluates on.")
    in_training: int = Field(ge=0, description="Of those, how many are in the training dataset.")

    @classmethod
    def measure(cls, train: Sequence[Problem], evaluated: Sequence[Problem]) -> Contamination:
        seen = {problem_key(p.problem) for p in train}
        return cls(
            eval_problems=len(evaluated), in_training=sum(problem_key(p.problem) in seen for p in evaluated)
        )

    def warning(self) -> str | None:
        """What to tell a user when the held-out set is not held out; None when it is."""
        if self.in_training == 0:
            return None
        return (
            f"{self.in_training} of the {self.eval_problems} evaluation problems are also in the training "
            "dataset: their held-out scores measure memory, not reasoning; remove them from one of the files"
        )


def problem_key(text: str) -> str:
    """A problem's text as the contamination check compares it: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


class ProblemSetError(ValueError):
    """A problem file that cannot be read; the message says which file, which record and why."""


def load_problems(path: Path) -> list[Problem]:
    """Read a `.json` list or a `.jsonl` file of problems; records without an id get `<stem>-<index>`."""
    if not path.is_file():
        raise ProblemSetError(f"problem file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
            if not isinstance(raw, list):
                raise ProblemSetError(f"{path}: expected a JSON list of problems, got {type(raw).__name__}")
            rows: list[Any] = raw
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ProblemSetError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    problems = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ProblemSetError(f"{path}: record {index} is not an object")
        row = {**row, "id": str(row.get("id", f"{path.stem}-{index}"))}
        try:
            problems.append(Problem.model_validate(row))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ProblemSetError(f"{path}: record {index}: field {field!r}: {first['msg']}") from err
    if not problems:
        raise ProblemSetError(f"{path}: no problems in the file")
    return problems


def write_problems(problems: Iterable[Problem], path: Path) -> int:
    """Write problems as JSON lines atomically (a temporary file renamed into place); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for problem in problems:
            handle.write(problem.model_dump_json(exclude_none=True) + "\n")
            count += 1
    tmp.replace(path)
    return count
