"""Problem sets: JSON lists (as in ../shared/data), JSON lines (as `anytime data synth` writes), Parquet files
(verl's, DeepScaleR's) and Hugging Face `datasets` (a folder written by `save_to_disk`, or `hf:OWNER/NAME`
read from the hub), each read through a column mapping (`ProblemColumns`).

A record's problem and answer are found where its mapping says: the default reads `problem` and `answer`;
the presets (`COLUMN_PRESETS`) read verl's `prompt` chat and `reward_model.ground_truth`, DeepScaleR's
`problem` / `answer`, and MATH's `problem` with the last `\\boxed{}` of its `solution`. `id` and `trace` are
read when a record has them; other columns are ignored. A file that lacks a mapped column is refused with
`MissingColumnError`, which names the column and the columns the file has. A record without an answer (a
null, or a text with no closed box) cannot be graded: it is left out, and how many were is logged (two of
the 7,474 MATH train problems in ../shared/data have a null answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from anytime.boxed import last_boxed
from anytime.logging import get_logger

Answer = str | int | float | list[str | int | float]

# A dataset on the Hugging Face hub: `hf:OWNER/NAME`, optionally `/CONFIG` and `:SPLIT` (default train).
HUB_PREFIX = "hf:"
PARQUET_SUFFIXES = (".parquet", ".pq")

logger = get_logger(__name__)


class Problem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    problem: str
    answer: Answer
    trace: str | None = None


class ProblemColumns(BaseModel):
    """Where a dataset's records keep a problem and its answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: str = Field(
        default="problem",
        min_length=1,
        description="The problem's column; a dotted path reads a nested one. A chat (a list of {role, "
        "content}, as verl's `prompt`) of one user turn gives that turn's content.",
    )
    answer: str = Field(
        default="answer",
        min_length=1,
        description="The answer's column (e.g. `reward_model.ground_truth`): a string, number or list.",
    )
    answer_from: Literal["value", "last_boxed"] = Field(
        default="value",
        description="value: the column holds the answer; last_boxed: the answer is the content of the last "
        "\\boxed{} of the column's text (MATH's `solution`).",
    )


ColumnPreset = Literal["deepscaler", "verl", "math"]  # COLUMN_PRESETS' names, for the JSON schema
COLUMN_PRESETS: Mapping[str, ProblemColumns] = MappingProxyType(
    {
        "deepscaler": ProblemColumns(),
        "verl": ProblemColumns(problem="prompt", answer="reward_model.ground_truth"),
        "math": ProblemColumns(answer="solution", answer_from="last_boxed"),
    }
)
DEFAULT_COLUMNS = ProblemColumns()


def _columns_from_preset(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value not in COLUMN_PRESETS:
        raise ValueError(
            f"unknown column preset {value!r}; name one of {', '.join(COLUMN_PRESETS)} or give the columns "
            "as {problem: COLUMN, answer: COLUMN, answer_from: value | last_boxed}"
        )
    return COLUMN_PRESETS[value]


# A config field's type: a preset's name or the columns themselves, validated to `ProblemColumns` (what is
# stored and shown); the JSON schema offers both forms.
DatasetColumns = Annotated[
    ProblemColumns,
    BeforeValidator(_columns_from_preset, json_schema_input_type=ColumnPreset | ProblemColumns),
]
_COLUMNS: TypeAdapter[ProblemColumns] = TypeAdapter(DatasetColumns)


def parse_columns(text: str) -> ProblemColumns:
    """A command line's `--columns`: a preset's name (deepscaler, verl, math) or the columns as a JSON object,
    validated as a run config's `dataset_columns` is; a bad value is a `ValueError` saying what is taken."""
    value: Any = text
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"--columns is not valid JSON ({err.msg} at character {err.pos}): {text}"
            ) from None
    try:
        return _COLUMNS.validate_python(value)
    except ValidationError as err:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise ValueError(
            f"--columns {text!r}: {reasons}; give a preset ({', '.join(COLUMN_PRESETS)}) or a JSON object "
            '{"problem": COLUMN, "answer": COLUMN, "answer_from": "value" | "last_boxed"}'
        ) from None


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
    """A problem set that cannot be read; the message says which set, which record and why."""


class MissingColumnError(ProblemSetError):
    """A mapped column the dataset does not have; `available` are the columns it has (those of `parent`,
    the nested record a dotted column reaches into, when it is one)."""

    def __init__(
        self, source: str, where: str, column: str, role: str, available: Iterable[str], parent: str = ""
    ) -> None:
        self.column, self.role, self.available = column, role, tuple(available)
        listed = ", ".join(self.available) or "none"
        holder = f"{parent} holds" if parent else "its columns"
        super().__init__(f"{source}: {where}no column {column!r} (the {role}); {holder}: {listed}")


class ExtraMissingError(ProblemSetError):
    """A dataset format whose reader is an optional dependency that is not installed."""


def load_problems(source: Path | str, columns: ProblemColumns = DEFAULT_COLUMNS) -> list[Problem]:
    """Read a problem set: a `.json` list, a `.parquet` file, a `datasets` folder, `hf:OWNER/NAME[:SPLIT]`
    or else JSON lines, through `columns`. Records without an id get `<name>-<index>` (their index in the
    set); records without an answer are left out, and how many is logged."""
    text = str(source)
    if text.startswith(HUB_PREFIX):
        name, rows, names = _read_hub(text)
        return _problems(text, name, rows, columns, names)
    path = Path(source)
    if path.is_dir():
        rows, names = _read_datasets_folder(path)
        return _problems(text, path.name, rows, columns, names)
    if not path.is_file():
        raise ProblemSetError(f"problem file {path} does not exist")
    if path.suffix in PARQUET_SUFFIXES:
        rows, names = _read_parquet(path, columns)
        return _problems(text, path.stem, rows, columns, names)
    return _problems(text, path.stem, _read_json(path), columns, None)


def with_prompt_suffix(problems: Iterable[Problem], suffix: str) -> list[Problem]:
    """The problems with `suffix` after each problem's text (the authors' " Let's think step by step and
    output the final answer within \\boxed{}."); an empty suffix leaves them as they are."""
    if not suffix:
        return list(problems)
    return [problem.model_copy(update={"problem": problem.problem + suffix}) for problem in problems]


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


def _problems(
    source: str,
    name: str,
    rows: Sequence[Any],
    columns: ProblemColumns,
    column_names: Sequence[str] | None,
) -> list[Problem]:
    """Records → problems through `columns`. `column_names`: a table's columns (checked once, up front);
    None for JSON, whose records are checked one by one."""
    if column_names is not None:
        for role in ("problem", "answer"):
            column = getattr(columns, role)
            if column not in column_names and column.split(".")[0] not in column_names:
                raise MissingColumnError(source, "", column, role, column_names)
    problems: list[Problem] = []
    unanswered: list[int] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ProblemSetError(f"{source}: record {index} is not an object")
        where = f"record {index}: "
        problem = _problem_text(source, where, row, columns.problem)
        answer = _answer(source, where, row, columns)
        if answer is None:
            unanswered.append(index)
            continue
        record = {
            "id": str(row["id"]) if row.get("id") is not None else f"{name}-{index}",
            "problem": problem,
            "answer": answer,
        }
        if row.get("trace") is not None:
            record["trace"] = row["trace"]
        try:
            problems.append(Problem.model_validate(record))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ProblemSetError(f"{source}: {where}field {field!r}: {first['msg']}") from err
    if not problems:
        held = f" ({len(unanswered)} records, none with an answer)" if unanswered else ""
        raise ProblemSetError(f"{source}: no problems in the file{held}")
    if unanswered:
        logger.warning(
            "records without an answer left out", source=source, left_out=len(unanswered),
            kept=len(problems), first_records=unanswered[:5],
        )  # fmt: skip
    return problems


def _lookup(source: str, where: str, row: Mapping[str, Any], column: str, role: str) -> Any:
    """The value at a column (a dotted path reaches into nested records, unless a column has the dotted
    name itself); `MissingColumnError` names the level that lacks it."""
    if column in row:
        return row[column]
    value: Any = row
    keys = column.split(".")
    for depth, key in enumerate(keys):
        if not isinstance(value, Mapping) or key not in value:
            here = [str(k) for k in value] if isinstance(value, Mapping) else []
            raise MissingColumnError(source, where, column, role, here, ".".join(keys[:depth]))
        value = value[key]
    return value


def _problem_text(source: str, where: str, row: Mapping[str, Any], column: str) -> Any:
    value = _lookup(source, where, row, column, "problem")
    if isinstance(value, list) and all(isinstance(m, Mapping) and "content" in m for m in value):
        roles = [m.get("role") for m in value]
        if roles != ["user"]:
            raise ProblemSetError(
                f"{source}: {where}the problem column {column!r} is a chat of turns {roles}; only a chat of "
                "one user turn is read (its content is the problem, the model's own template wraps it)"
            )
        return value[0]["content"]
    return value


def _answer(source: str, where: str, row: Mapping[str, Any], columns: ProblemColumns) -> Any:
    """The record's answer; None when it has none (a null, or no closed box in the text)."""
    value = _lookup(source, where, row, columns.answer, "answer")
    if columns.answer_from == "value" or value is None:
        return value
    if not isinstance(value, str):
        raise ProblemSetError(
            f"{source}: {where}column {columns.answer!r} holds a {type(value).__name__}, not the text "
            "answer_from last_boxed reads a \\boxed{} from"
        )
    return last_boxed(value)


def _read_json(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
            if not isinstance(raw, list):
                raise ProblemSetError(f"{path}: expected a JSON list of problems, got {type(raw).__name__}")
            return raw
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ProblemSetError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err


def _read_parquet(path: Path, columns: ProblemColumns) -> tuple[list[dict[str, Any]], list[str]]:
    """The table's rows (only the columns a problem reads) and all its column names."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ExtraMissingError(
            f"{path}: reading Parquet needs pyarrow; install the parquet extra "
            "(pip install 'anytime[parquet]')"
        ) from None
    try:
        names = list(pq.read_schema(path).names)
        mapped = (columns.problem, columns.answer)
        wanted = {*mapped, *(c.split(".")[0] for c in mapped), "id", "trace"}
        table = pq.read_table(path, columns=[n for n in names if n in wanted])
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ProblemSetError(f"{path}: not a readable Parquet file ({err})") from err
    return table.to_pylist(), names


def _import_datasets(source: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise ExtraMissingError(
            f"{source}: reading a Hugging Face dataset needs the datasets library; install the hf extra "
            "(pip install 'anytime[hf]')"
        ) from None
    return datasets


def _read_datasets_folder(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """A folder written by `Dataset.save_to_disk` (one split: its `state.json` beside the arrow files)."""
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file()) or ["train"]
        example = "train" if "train" in splits else splits[0]
        raise ProblemSetError(
            f"{path} holds the splits {', '.join(splits)} of a Hugging Face dataset: name one's folder, "
            f"e.g. {path / example}"
        )
    if not (path / "state.json").is_file():
        raise ProblemSetError(
            f"{path} is a folder but not a Hugging Face dataset (one written by save_to_disk has a "
            "state.json); name a .jsonl, .json or .parquet file, or such a folder"
        )
    datasets = _import_datasets(str(path))
    try:
        dataset = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as err:
        raise ProblemSetError(f"{path}: not a readable Hugging Face dataset ({err})") from err
    return dataset.to_list(), list(dataset.column_names)


def _read_hub(text: str) -> tuple[str, list[dict[str, Any]], list[str]]:
    """`hf:OWNER/NAME[/CONFIG][:SPLIT]` from the hub (or its local cache): its name, rows and columns."""
    repo, _, split = text[len(HUB_PREFIX) :].partition(":")
    parts = repo.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ProblemSetError(
            f"{text}: a hub dataset is hf:OWNER/NAME, optionally /CONFIG and :SPLIT "
            "(e.g. hf:agentica-org/DeepScaleR-Preview-Dataset:train)"
        )
    datasets = _import_datasets(text)
    config = parts[2] if len(parts) == 3 else None
    try:
        dataset = datasets.load_dataset("/".join(parts[:2]), config, split=split or "train")
    except (OSError, ValueError) as err:  # not found, no network, an unknown split
        raise ProblemSetError(f"{text}: cannot load it from the hub ({type(err).__name__}: {err})") from err
    return parts[1], dataset.to_list(), list(dataset.column_names)
