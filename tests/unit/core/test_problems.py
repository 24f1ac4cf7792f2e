"""Problem files: both on-disk formats, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anytime.problems import ProblemSetError, load_problems

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


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
        ('{"problem": "p"}\n', "field 'answer'"),
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


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout")
def test_reads_the_shared_math_sets() -> None:
    problems = load_problems(SHARED_DATA / "test" / "aime.json")
    assert len(problems) == 30 and all(p.problem and p.answer is not None for p in problems)
