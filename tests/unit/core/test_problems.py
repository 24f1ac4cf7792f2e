"""Problem sets: every on-disk format (JSON, JSON lines, Parquet, a `datasets` folder, the hub), the column
mappings (verl, DeepScaleR, MATH's boxed solutions), and clear errors for bad files and missing columns."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from anytime.problems import (
    COLUMN_PRESETS,
    ColumnPreset,
    ExtraMissingError,
    MissingColumnError,
    Problem,
    ProblemColumns,
    ProblemSetError,
    load_problems,
)
from anytime.run_config import RunConfig

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"

# verl's layout (the authors' DeepScaleR parquet): the problem is a one-turn chat, the answer nested.
VERL_ROWS = [
    {
        "data_source": "deepscaler",
        "prompt": [{"role": "user", "content": "What is 1+1? Let's think step by step."}],
        "reward_model": {"style": "rule", "ground_truth": "2"},
    },
    {
        "data_source": "deepscaler",
        "prompt": [{"role": "user", "content": "Halve 1."}],
        "reward_model": {"style": "rule", "ground_truth": "\\frac{1}{2}"},
    },
]


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_reads_json_list_with_generated_ids(tmp_path: Path) -> None:
    path = tmp_path / "set.json"
    path.write_text(
        json.dumps([{"problem": "1+1?", "answer": "2", "level": 1}, {"problem": "x", "answer": ["a", 3]}])
    )
    problems = load_problems(path)
    assert [p.id for p in problems] == ["set-0", "set-1"]
    assert problems[1].answer == ["a", 3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"problem": "p"}\n', r"record 0: no column 'answer' \(the answer\); its columns: problem$"),
        ("", "no problems"),
        ("[1, 2]", None),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, content: str, message: str | None) -> None:
    path = tmp_path / ("bad.json" if content.startswith("[") else "bad.jsonl")
    path.write_text(content)
    with pytest.raises(ProblemSetError, match=message or "not an object"):
        load_problems(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProblemSetError, match="does not exist"):
        load_problems(tmp_path / "absent.jsonl")


def test_parquet_in_verl_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "deepscaler.parquet", VERL_ROWS)
    problems = load_problems(path, COLUMN_PRESETS["verl"])
    assert problems == [
        Problem(id="deepscaler-0", problem="What is 1+1? Let's think step by step.", answer="2"),
        Problem(id="deepscaler-1", problem="Halve 1.", answer="\\frac{1}{2}"),
    ]


def test_parquet_in_deepscaler_columns_keeps_ids_and_typed_answers(tmp_path: Path) -> None:
    rows = [
        {"id": 7, "problem": "2*3?", "answer": "6", "solution": "..."},
        {"id": 9, "problem": "p", "answer": "x"},
    ]
    path = write_parquet(tmp_path / "train.parquet", rows)
    problems = load_problems(path, COLUMN_PRESETS["deepscaler"])
    assert [(p.id, p.problem, p.answer) for p in problems] == [("7", "2*3?", "6"), ("9", "p", "x")]


def test_math_columns_take_the_last_box_of_the_solution_braces_matched(tmp_path: Path) -> None:
    rows = [
        {"problem": "a", "solution": "First $\\boxed{3}$, then halve: $\\boxed{\\frac{1}{2}}$."},
        {"problem": "b", "solution": "$x = \\boxed{\\sqrt{\\frac{a}{b}}}$ and \\{not a box\\}"},
        {"problem": "c", "solution": "An escaped brace \\boxed{\\{1, 2\\}} is literal."},
        {"problem": "d", "solution": "Framed: \\fbox{42}; an unclosed \\boxed{7 is not an answer"},
    ]
    problems = load_problems(write_json(tmp_path / "math.json", rows), COLUMN_PRESETS["math"])
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "\\sqrt{\\frac{a}{b}}", "\\{1, 2\\}", "42"]
    assert load_problems(write_parquet(tmp_path / "math.parquet", rows), COLUMN_PRESETS["math"]) == problems


def test_records_without_an_answer_are_left_out_and_a_set_of_none_is_refused(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"problem": "a", "solution": "no box here"},
        {"problem": "b", "solution": "\\boxed{2}"},
        {"problem": "c", "solution": None},
    ]
    problems = load_problems(write_json(tmp_path / "math.json", rows), COLUMN_PRESETS["math"])
    assert [(p.id, p.answer) for p in problems] == [("math-1", "2")]  # ids keep the record's index
    nulls = write_json(tmp_path / "nulls.json", [{"problem": "a", "answer": None}] * 2)
    with pytest.raises(ProblemSetError, match=r"no problems in the file \(2 records, none with an answer\)"):
        load_problems(nulls)


def test_a_missing_column_is_named_with_the_columns_the_file_has(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "math.parquet", [{"problem": "a", "solution": "\\boxed{1}", "level": 2}])
    with pytest.raises(MissingColumnError) as caught:
        load_problems(path)
    error = caught.value
    assert (error.column, error.role, error.available) == (
        "answer",
        "answer",
        ("problem", "solution", "level"),
    )
    assert str(error) == f"{path}: no column 'answer' (the answer); its columns: problem, solution, level"


def test_a_missing_nested_column_names_the_record_that_lacks_it(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "verl.parquet", VERL_ROWS)
    columns = ProblemColumns(problem="prompt", answer="reward_model.answer")
    with pytest.raises(MissingColumnError, match=r"record 0: no column 'reward_model.answer' \(the answer\); "
                       "reward_model holds: style, ground_truth"):  # fmt: skip
        load_problems(path, columns)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"question": "q", "answer": 1}\n')
    with pytest.raises(
        MissingColumnError, match=r"record 0: no column 'problem' .*its columns: question, answer"
    ):
        load_problems(jsonl)


def test_a_column_named_with_a_dot_is_read_as_it_is(tmp_path: Path) -> None:
    rows = [{"problem": "1+1?", "reward_model.ground_truth": "2"}]  # flattened as pandas' json_normalize does
    columns = ProblemColumns(answer="reward_model.ground_truth")
    assert load_problems(write_parquet(tmp_path / "flat.parquet", rows), columns)[0].answer == "2"
    assert load_problems(write_json(tmp_path / "flat.json", rows), columns)[0].answer == "2"


def test_a_chat_problem_must_be_one_user_turn(tmp_path: Path) -> None:
    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}],
             "reward_model": {"ground_truth": "2"}}]  # fmt: skip
    with pytest.raises(ProblemSetError, match=r"record 0: the problem column 'prompt' is a chat of turns "):
        load_problems(write_json(tmp_path / "chat.json", rows), COLUMN_PRESETS["verl"])


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "broken.parquet"
    path.write_text("not parquet")
    with pytest.raises(ProblemSetError, match="not a readable Parquet file"):
        load_problems(path)


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # `import pyarrow.parquet` raises ImportError
    with pytest.raises(
        ExtraMissingError, match=r"install the parquet extra \(pip install 'anytime\[parquet\]'\)"
    ):
        load_problems(path)


def saved_dataset_folder(path: Path) -> Path:
    """A folder shaped like `Dataset.save_to_disk`'s (the marker the loader looks for)."""
    path.mkdir()
    (path / "state.json").write_text("{}")
    return path


def test_a_datasets_folder_without_the_library_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ExtraMissingError, match=r"install the hf extra \(pip install 'anytime\[hf\]'\)"):
        load_problems(saved_dataset_folder(tmp_path / "deepscaler"))
    with pytest.raises(ExtraMissingError, match="hf extra"):
        load_problems("hf:agentica-org/DeepScaleR-Preview-Dataset")


def test_folders_that_are_not_one_split_say_what_to_name(tmp_path: Path) -> None:
    with pytest.raises(ProblemSetError, match="is a folder but not a Hugging Face dataset"):
        load_problems(tmp_path)
    splits = tmp_path / "dict"
    splits.mkdir()
    (splits / "dataset_dict.json").write_text('{"splits": ["test", "train"]}')
    for split in ("test", "train"):
        saved_dataset_folder(splits / split)
    with pytest.raises(ProblemSetError, match=f"holds the splits test, train .* e.g. {splits / 'train'}"):
        load_problems(splits)


class FakeDataset:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.column_names = list(rows[0])

    def to_list(self) -> list[dict[str, Any]]:
        return self.rows


def fake_datasets(monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A stand-in `datasets` module whose loaders return `rows` and record how they were called."""
    calls: list[tuple[Any, ...]] = []

    def load_from_disk(path: str) -> FakeDataset:
        calls.append(("disk", path))
        return FakeDataset(rows)

    def load_dataset(name: str, config: str | None, split: str) -> FakeDataset:
        calls.append(("hub", name, config, split))
        return FakeDataset(rows)

    module = ModuleType("datasets")
    vars(module).update(load_from_disk=load_from_disk, load_dataset=load_dataset)
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_hub_ids_name_the_dataset_its_config_and_split(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = fake_datasets(monkeypatch, [{"problem": "p", "solution": "\\boxed{5}"}])
    problems = load_problems("hf:EleutherAI/hendrycks_math/algebra:test", COLUMN_PRESETS["math"])
    assert problems == [Problem(id="hendrycks_math-0", problem="p", answer="5")]
    load_problems("hf:org/set", COLUMN_PRESETS["math"])
    folder = saved_dataset_folder(tmp_path / "saved")
    assert [p.id for p in load_problems(folder, COLUMN_PRESETS["math"])] == ["saved-0"]
    assert calls == [
        ("hub", "EleutherAI/hendrycks_math", "algebra", "test"),
        ("hub", "org/set", None, "train"),
        ("disk", str(folder)),
    ]
    for bad in ("hf:nameonly", "hf:a/b/c/d", "hf:/set"):
        with pytest.raises(ProblemSetError, match="a hub dataset is hf:OWNER/NAME"):
            load_problems(bad)


def test_a_saved_dataset_round_trips_through_the_real_library(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [
        {"problem": "a", "solution": "so \\boxed{\\frac{1}{2}}"},
        {"problem": "b", "solution": "\\boxed{3}"},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "math"))
    problems = load_problems(tmp_path / "math", COLUMN_PRESETS["math"])
    assert [(p.id, p.answer) for p in problems] == [("math-0", "\\frac{1}{2}"), ("math-1", "3")]


def test_the_schema_offers_the_preset_names_and_the_columns() -> None:
    assert set(get_args(ColumnPreset)) == set(COLUMN_PRESETS)
    schema = RunConfig.model_json_schema()["properties"]["dataset_columns"]["anyOf"]
    assert schema[0] == {"enum": ["deepscaler", "verl", "math"], "type": "string"}
    assert schema[1] == {"$ref": "#/$defs/ProblemColumns"}


def test_run_configs_take_a_preset_name_or_the_columns() -> None:
    config = RunConfig.model_validate(
        {"model": "m", "dataset": "d.parquet", "dataset_columns": "verl",
         "eval_dataset": "e.json", "eval_dataset_columns": {"problem": "question"}}
    )  # fmt: skip
    assert config.dataset_columns == ProblemColumns(problem="prompt", answer="reward_model.ground_truth")
    assert config.evaluation.dataset_columns == ProblemColumns(problem="question", answer="answer")
    assert config.flat()["eval_dataset_columns"] == {
        "problem": "question",
        "answer": "answer",
        "answer_from": "value",
    }
    assert RunConfig.model_validate(config.flat()) == config
    assert RunConfig(model="m", dataset="d").dataset_columns == ProblemColumns()  # problem / answer
    with pytest.raises(
        ValidationError, match="unknown column preset 'MATH'; name one of deepscaler, verl, math"
    ):
        RunConfig.model_validate({"model": "m", "dataset": "d", "dataset_columns": "MATH"})
    with pytest.raises(ValidationError, match="answer_from"):
        RunConfig.model_validate({"model": "m", "dataset": "d", "dataset_columns": {"answer_from": "box"}})


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout")
def test_reads_the_shared_math_sets() -> None:
    problems = load_problems(SHARED_DATA / "test" / "aime.json")
    assert len(problems) == 30 and all(p.problem and p.answer is not None for p in problems)
    train = load_problems(SHARED_DATA / "train" / "math.json")  # records 886 and 1009 have a null answer
    assert len(train) == 7_472 and {"math-886", "math-1009"}.isdisjoint(p.id for p in train)
