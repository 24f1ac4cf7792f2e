"""`--columns` on `anytime eval` and `anytime rollout`: a verl parquet and MATH's `\\boxed{}` solutions read
from the command line, parsed as a run config's `dataset_columns`; a bad value is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anytime.problems import COLUMN_PRESETS, ProblemColumns, parse_columns
from tests.conftest import anytime_cli


def test_columns_are_a_preset_or_a_json_object() -> None:
    assert parse_columns("verl") == COLUMN_PRESETS["verl"]
    assert parse_columns('{"problem": "question", "answer": "solution", "answer_from": "last_boxed"}') == (
        ProblemColumns(problem="question", answer="solution", answer_from="last_boxed")
    )
    with pytest.raises(ValueError, match="unknown column preset 'gsm8k'"):
        parse_columns("gsm8k")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_columns('{"problem": ')
    with pytest.raises(ValueError, match="Input should be 'value' or 'last_boxed'"):
        parse_columns('{"answer_from": "first_boxed"}')
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        parse_columns('{"question": "q"}')


def _verl_parquet(path: Path) -> Path:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Digit chain: start at {i}. Apply +1 once."}],
            "reward_model": {"ground_truth": str(i + 1), "style": "rule"},
        }
        for i in range(3)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_rollout_reads_a_verl_parquet_with_its_preset(tiny_model_dir: Path, tmp_path: Path) -> None:
    data, out = _verl_parquet(tmp_path / "train.parquet"), tmp_path / "traj.jsonl"
    args = ("rollout", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out))
    small = ("--budgets", "8,16", "--group", "1", "--summaries", "1", "--summary-tokens", "4")
    refused = anytime_cli(*args, *small, check=False)  # the default layout has no `problem` column
    assert refused.returncode == 2 and "problem" in refused.stderr and not out.exists()
    done = anytime_cli(*args, *small, "--columns", "verl")
    assert done.returncode == 0, done.stderr
    trajectories = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["answer"] for t in trajectories] == ["1", "2", "3"]


def test_eval_reads_maths_boxed_solutions_and_refuses_a_bad_layout(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "math.json"
    data.write_text(json.dumps([{"problem": "1+1?", "solution": "So it is $\\boxed{2}$."}]))
    args = ("eval", "--model", str(tiny_model_dir), "--data", str(data), "--budgets", "8", "--n", "1")
    done = anytime_cli(*args, "--columns", "math")
    assert done.returncode == 0, done.stderr
    assert "problems 1" in done.stdout
    bad = anytime_cli(*args, "--columns", '{"problem": "problem", "answer": 3}', check=False)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("anytime: error: --columns"), (
        bad.stderr
    )
