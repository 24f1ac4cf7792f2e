"""`POST /v1/runs` checks a run's model and datasets at the door (services/api/run_inputs.py): a bad one is
a 422 naming the field, and nothing is stored or scheduled.

The API runs in `tmp_path`, its only data root, holding `models/tiny` and `data/train.jsonl` (8 problems);
see test_api_routes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from services.api.run_inputs import outside_roots_message
from services.api.settings import ApiSettings
from tests.unit.api.test_api_routes import CONFIG, REPO, Api, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses


def refused(api: Api, **overrides: Any) -> dict[str, str]:
    """POST a config that must be refused; {field: message} of the 422, after checking nothing was made."""
    before = api.client.get("/v1/runs").json()["total"]
    response = api.client.post("/v1/runs", json={**CONFIG, **overrides})
    assert response.status_code == 422, response.text
    assert api.client.get("/v1/runs").json()["total"] == before
    assert api.scheduler.sent == []
    errors = response.json()["detail"]
    assert all(error["loc"][0] == "body" for error in errors)
    return {error["loc"][1]: error["msg"] for error in errors}


def outside(tmp_path: Path, field: str) -> str:
    return (
        f"{field} must be a path under the data roots ({tmp_path.resolve()}); "
        "put the file there or add its folder to ANYTIME_DATA_ROOTS"
    )


def test_the_fixture_config_is_accepted(api: Api) -> None:
    assert api.client.post("/v1/runs", json=CONFIG).status_code == 201  # what the refusals below vary


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/does-not-exist", "/etc", "/dev/zero", "~/x.jsonl"])
def test_a_dataset_outside_the_roots_gets_one_message_whatever_is_there(
    api: Api, tmp_path: Path, path: str
) -> None:
    assert refused(api, dataset=path) == {"dataset": outside(tmp_path, "dataset")}
    assert refused(api, eval_dataset=path) == {"eval_dataset": outside(tmp_path, "eval_dataset")}
    assert outside_roots_message("dataset", [tmp_path.resolve()]) == outside(tmp_path, "dataset")


def test_dot_dot_and_symlinks_are_resolved_before_the_roots_check(api: Api, tmp_path: Path) -> None:
    escape = "data/../../" + "x" * 8 + ".jsonl"  # names a file next to tmp_path, outside it
    assert refused(api, dataset=escape) == {"dataset": outside(tmp_path, "dataset")}
    link = tmp_path / "data" / "passwd.jsonl"
    link.symlink_to("/etc/passwd")
    assert refused(api, dataset="data/passwd.jsonl") == {"dataset": outside(tmp_path, "dataset")}
    # a symlink inside the roots to a file inside the roots is fine
    (tmp_path / "data" / "alias.jsonl").symlink_to(tmp_path / "data" / "train.jsonl")
    assert api.client.post("/v1/runs", json={**CONFIG, "dataset": "data/alias.jsonl"}).status_code == 201


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no problems in the file"),
        ("\n\n", "no problems in the file"),
        ('{"problem": "1+1?", "answer": 2}\n{"problem": "2+2?", "answer":\n', "not valid JSON"),
        ('{"problem": "1+1?"}\n', "record 0: no column 'answer' (the answer); its columns: problem"),
        ("[1, 2]\n", "record 0 is not an object"),
    ],
    ids=["empty", "blank-lines", "malformed-jsonl", "missing-answer", "not-objects"],
)
def test_a_dataset_the_workers_could_not_read_is_refused(
    api: Api, tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "data" / "bad.jsonl").write_text(content)
    errors = refused(api, dataset="data/bad.jsonl")
    assert set(errors) == {"dataset"} and message in errors["dataset"]
    errors = refused(api, eval_dataset="data/bad.jsonl")
    assert set(errors) == {"eval_dataset"} and message in errors["eval_dataset"]


def test_missing_unreadable_and_non_file_datasets_inside_the_roots(api: Api, tmp_path: Path) -> None:
    assert refused(api, dataset="data/missing.jsonl") == {
        "dataset": "dataset data/missing.jsonl does not exist"
    }
    assert refused(api, dataset="data") == {
        "dataset": f"dataset: {tmp_path.resolve() / 'data'} is a folder but not a Hugging Face dataset (one "
        "written by save_to_disk has a state.json); name a .jsonl, .json or .parquet file, or such a folder"
    }
    (tmp_path / "data" / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    assert refused(api, dataset="data/binary.jsonl") == {
        "dataset": "dataset data/binary.jsonl is not UTF-8 text"
    }
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "data" / "locked.jsonl"
        locked.write_text('{"problem": "1+1?", "answer": 2}\n')
        locked.chmod(0)
        assert refused(api, dataset="data/locked.jsonl") == {
            "dataset": "dataset data/locked.jsonl is not readable by the API"
        }


VERL_ROWS = [
    {"prompt": [{"role": "user", "content": f"{i} + 1?"}], "reward_model": {"ground_truth": str(i + 1)}}
    for i in range(8)
]


def test_a_parquet_dataset_is_read_through_its_columns(api: Api, tmp_path: Path) -> None:
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(VERL_ROWS), tmp_path / "data" / "verl.parquet")
    body = {**CONFIG, "dataset": "data/verl.parquet", "dataset_columns": "verl"}
    created = api.client.post("/v1/runs", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["config"]["dataset_columns"] == {
        "problem": "prompt", "answer": "reward_model.ground_truth", "answer_from": "value"
    }  # fmt: skip
    # The same training file with eval_dataset in verl's columns: 1 + 1 … 3 + 1 are training problems.
    (tmp_path / "data" / "eval.jsonl").write_text('{"problem": "2 + 1?", "answer": 3}\n')
    run = api.client.post("/v1/runs", json={**body, "eval_dataset": "data/eval.jsonl"}).json()
    assert run["contamination"] == {"eval_problems": 1, "in_training": 1}


def test_a_dataset_without_the_mapped_column_is_a_422_naming_it(api: Api, tmp_path: Path) -> None:
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "data" / "verl.parquet"
    pq.write_table(pa.Table.from_pylist(VERL_ROWS), path)
    hint = "(a preset: deepscaler, verl, math; or {problem: COLUMN, answer: COLUMN})"
    assert refused(api, dataset="data/verl.parquet") == {
        "dataset": f"dataset: {path.resolve()}: no column 'problem' (the problem); its columns: prompt, "
        f"reward_model; map the file's columns with dataset_columns {hint}"
    }
    assert refused(api, eval_dataset="data/verl.parquet", eval_dataset_columns={"problem": "prompt"}) == {
        "eval_dataset": f"eval_dataset: {path.resolve()}: no column 'answer' (the answer); its "
        f"columns: prompt, reward_model; map the file's columns with eval_dataset_columns {hint}"
    }
    errors = refused(api, dataset_columns="MATH")
    assert (
        set(errors) == {"dataset_columns"}
        and "name one of deepscaler, verl, math" in errors["dataset_columns"]
    )


def test_a_hub_dataset_needs_the_hf_extra_at_the_door(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as where the hf extra is not installed
    hub = "hf:agentica-org/DeepScaleR-Preview-Dataset"
    assert refused(api, dataset=hub) == {
        "dataset": f"dataset: {hub}: reading a Hugging Face dataset needs the datasets library; install the "
        "hf extra (pip install 'anytime[hf]')"
    }


def test_problems_per_step_above_the_training_set_says_its_size(api: Api) -> None:
    errors = refused(api, problems_per_step=9)
    assert errors == {
        "problems_per_step": "problems_per_step is 9 but the training dataset data/train.jsonl holds 8 "
        "problems; lower it to at most 8"
    }
    assert api.client.post("/v1/runs", json={**CONFIG, "problems_per_step": 8}).status_code == 201


def test_a_model_must_be_a_model_folder_under_the_roots_or_a_hub_id(api: Api, tmp_path: Path) -> None:
    not_a_model = "model data is not a Hugging Face model folder (a folder with a config.json)"
    assert refused(api, model="data") == {"model": not_a_model}
    assert refused(api, model="./data/train.jsonl") == {
        "model": "model ./data/train.jsonl is not a Hugging Face model folder (a folder with a config.json)"
    }
    assert refused(api, model="./models/absent") == {"model": "model folder ./models/absent does not exist"}
    (tmp_path / "models" / "broken").mkdir()
    (tmp_path / "models" / "broken" / "config.json").write_text("{not json")
    errors = refused(api, model="models/broken")
    assert errors["model"].startswith("model models/broken: config.json is not valid JSON")
    hub_hint = " (or a hub id such as Qwen/Qwen2.5-1.5B-Instruct)"
    for path in ("/etc", "/etc/does-not-exist", "~", "../elsewhere"):
        assert refused(api, model=path) == {"model": outside(tmp_path, "model") + hub_hint}, path
    # a bare name is a path from the API's working directory (tmp_path here), not a hub id
    assert refused(api, model="tiny") == {"model": "model folder tiny does not exist"}
    created = api.client.post("/v1/runs", json={**CONFIG, "model": str(tmp_path / "models" / "tiny")})
    assert created.status_code == 201


def test_a_hub_id_that_names_nothing_here_is_left_to_the_workers(api: Api) -> None:
    response = api.client.post("/v1/runs", json={**CONFIG, "model": "Qwen/Qwen2.5-1.5B-Instruct"})
    assert response.status_code == 201, response.text
    assert response.json()["config"]["model"] == "Qwen/Qwen2.5-1.5B-Instruct"


def test_every_bad_field_is_named_at_once(api: Api) -> None:
    errors = refused(api, model="/etc", dataset="data/missing.jsonl", eval_dataset="/etc/passwd")
    assert set(errors) == {"model", "dataset", "eval_dataset"}


def test_data_roots_setting_forms_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert ApiSettings(ANYTIME_HOME=str(home)).resolved_data_roots == (home.resolve(), REPO / "build")
    for text in (
        f"{tmp_path}/a,{tmp_path}/b",
        f"{tmp_path}/a:{tmp_path}/b",
        f'["{tmp_path}/a", "{tmp_path}/b"]',
    ):
        monkeypatch.setenv("ANYTIME_DATA_ROOTS", text)
        assert ApiSettings().resolved_data_roots == (tmp_path / "a", tmp_path / "b"), text
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    monkeypatch.setenv("ANYTIME_DATA_ROOTS", f"{tmp_path}/link/../b,{tmp_path}/link")
    assert ApiSettings().resolved_data_roots == (tmp_path.resolve() / "b", tmp_path.resolve() / "a")


def test_evaluation_problems_that_are_training_problems_are_counted_and_warned(
    api: Api, tmp_path: Path
) -> None:
    # The training file holds "0 + 1?" … "7 + 1?"; the evaluation file two of them (one spaced and cased
    # otherwise) and two new ones; the run evaluates on the first three.
    rows = ['{"problem": "3 + 1?", "answer": 4}', '{"problem": "  5  +  1? ", "answer": 6}',
            '{"problem": "9 + 1?", "answer": 10}', '{"problem": "0 + 1?", "answer": 1}']  # fmt: skip
    (tmp_path / "data" / "eval.jsonl").write_text("\n".join(rows) + "\n")
    body = {**CONFIG, "eval_dataset": "data/eval.jsonl", "eval_problems": 3}
    created = api.client.post("/v1/runs", json=body)
    assert created.status_code == 201
    run = api.client.get(f"/v1/runs/{created.json()['id']}").json()
    assert run["contamination"] == {"eval_problems": 3, "in_training": 2}
    assert created.json()["warnings"] == run["warnings"]
    assert run["warnings"] == [
        "2 of the 3 evaluation problems are also in the training dataset: their held-out scores measure "
        "memory, not reasoning; remove them from one of the files"
    ]
    (tmp_path / "data" / "held-out.jsonl").write_text('{"problem": "9 + 1?", "answer": 10}\n')
    clean = api.client.post("/v1/runs", json={**CONFIG, "eval_dataset": "data/held-out.jsonl"}).json()
    assert clean["contamination"] == {"eval_problems": 1, "in_training": 0} and clean["warnings"] == []
    alone = api.client.post("/v1/runs", json=CONFIG).json()  # no evaluation set: nothing to measure
    assert alone["contamination"] is None and alone["warnings"] == []


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's settings read with hub inputs turned off (what ANYTIME_API_ALLOW_HUB=false does)."""
    monkeypatch.setenv("ANYTIME_API_ALLOW_HUB", "false")


def test_hub_inputs_can_be_turned_off_at_the_door(no_hub: None, api: Api) -> None:
    hub_model, hub_data = "Qwen/Qwen2.5-1.5B-Instruct", "hf:agentica-org/DeepScaleR-Preview-Dataset"
    off = "this API takes no hub inputs (ANYTIME_API_ALLOW_HUB=false)"
    assert refused(api, model=hub_model, eval_dataset=hub_data) == {
        "model": f"model {hub_model} is a hub id, and {off}: put the model folder under a data root and "
        "name it",
        "eval_dataset": f"eval_dataset {hub_data} is a hub dataset, and {off}: save it under a data root and "
        "name it",
    }
    assert api.client.post("/v1/runs", json=CONFIG).status_code == 201  # local inputs still go
    base = {**CONFIG, "model": hub_model, "eval_dataset": "data/train.jsonl"}
    spec = {"name": "e", "base": base, "arms": {"a": {}, "b": {"lr": 1e-4}}, "seeds": [0], "reference": "a"}
    response = api.client.post("/v1/experiments", json=spec)
    assert response.status_code == 422 and off in response.text
