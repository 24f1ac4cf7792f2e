"""Bad CLI input exits non-zero with one line on stderr and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import anytime_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "synth", "--n", "abc", "--out", "x.jsonl"], "Invalid value for '--n'"),
        (["data", "synth", "--n", "0", "--out", "x.jsonl"], "greater than or equal to 1"),
        (["data", "synth", "--task", "nope", "--out", "x.jsonl"], "unknown synthetic task 'nope'"),
        (["data", "synth", "--bogus"], "No such option: --bogus"),
        (["sft", "--model", "m", "--data", "/no/such/file.jsonl", "--out", "o"], "does not exist"),
        (["eval", "--model", "m", "--data", "d", "--budgets", "64,32"], "strictly increasing"),
        (["eval", "--model", "m", "--data", "d", "--budgets", "a,b"], "comma-separated integers"),
        (["model", "tiny"], "Missing option '--out'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = anytime_cli(*args, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("anytime: error:") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_model_folder_without_config_is_explained(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    anytime_cli("data", "synth", "--n", "2", "--out", str(data))
    result = anytime_cli("eval", "--model", str(tmp_path / "absent"), "--data", str(data), check=False)
    assert result.returncode == 2
    assert "has no config.json" in result.stderr and "anytime model tiny" in result.stderr


def test_data_without_traces_cannot_warm_start(tmp_path: Path) -> None:
    data = tmp_path / "no_trace.json"
    data.write_text('[{"problem": "1+1?", "answer": "2"}]')
    result = anytime_cli(
        "sft", "--model", "m", "--data", str(data), "--out", str(tmp_path / "o"), check=False
    )
    assert result.returncode == 2 and "have no trace" in result.stderr


def test_help_lists_the_subcommands() -> None:
    result = anytime_cli("--help")
    for command in ("model", "data", "sft", "eval", "demo"):
        assert command in result.stdout
