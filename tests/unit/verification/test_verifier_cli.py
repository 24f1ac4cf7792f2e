"""`anytime verify` end to end: one verdict per input line in order, malformed lines as errors, a summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import anytime_cli

CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"
WHOLE = "\n\n**Final Answer**\n"


def _line(**record: object) -> bytes:
    return json.dumps(record).encode() + b"\n"


def test_verify_file_end_to_end(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(
        b"".join(
            [
                _line(id="right", response=CUT + "\\boxed{\\dfrac{1}{2}}", ground_truth="0.5"),
                _line(id=2, response=WHOLE + "\\boxed{3}", ground_truth=["3"], thinking_closed=True),
                _line(id="wrong", response=CUT + "\\boxed{4}", ground_truth=5),
                _line(id="no box", response=CUT + "four", ground_truth="4"),
                _line(id="two ends", response=CUT + "\\boxed{4}", ground_truth="4", thinking_closed=True),
                b"{not json\n",
                b"\xff\xfe\n",
                _line(id="typo", response=CUT, ground_truth="1", thinking_close=True),
                _line(id="bad flag", response=CUT, ground_truth="1", thinking_closed="yes"),
                b"\n",
                _line(id="tower", response=CUT + "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}", ground_truth="1"),
                _line(id="repeat", response=CUT + "\\boxed{\\frac{1}{2}}", ground_truth="0.5"),
            ]
        )
    )
    result = anytime_cli("verify", "--in", str(source), "--out", str(out), "--timeout", "1", "--workers", "2")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [
        "right", 2, "wrong", "no box", "two ends", None, None, "typo", "bad flag", None, "tower", "repeat"
    ]  # fmt: skip
    statuses = [r["status"] for r in records]
    assert statuses == [
        "correct", "correct", "incorrect", "unparseable", "correct",
        "error", "error", "error", "error", "error", "timeout", "correct",
    ]  # fmt: skip
    assert [r["reward"] for r in records] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert records[0]["extracted"] == "\\dfrac{1}{2}" and records[4]["formatted"] is False
    assert set(records[0]) == {"id", "status", "formatted", "reward", "extracted"}
    messages = [r.get("message", "") for r in records]
    assert "not JSON" in messages[5] and "not valid UTF-8" in messages[6]
    assert "thinking_close" in messages[7] and "thinking_closed" in messages[8] and "empty" in messages[9]
    summary = result.stderr
    assert "verified 12 lines" in summary and "verdicts/s" in summary
    for status, count in [("correct", 4), ("incorrect", 1), ("unparseable", 1), ("timeout", 1), ("error", 5)]:
        assert any(row.split()[:2] == [status, str(count)] for row in summary.splitlines()), summary
    assert "cache hit rate" in summary


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--timeout", "0"], "--timeout must be a positive number"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--timeout", "soon"], "Invalid value for '--timeout'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("")
    result = anytime_cli(
        "verify", "--in", str(source), "--out", str(tmp_path / "o.jsonl"), *extra, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("anytime: error:") and message in result.stderr


def test_missing_input_and_output_folder_are_explained(tmp_path: Path) -> None:
    result = anytime_cli("verify", "--in", str(tmp_path / "absent.jsonl"), "--out", "o.jsonl", check=False)
    assert result.returncode == 2 and "not found" in result.stderr
    source = tmp_path / "in.jsonl"
    source.write_text("")
    result = anytime_cli(
        "verify", "--in", str(source), "--out", str(tmp_path / "no" / "o.jsonl"), check=False
    )
    assert result.returncode == 2 and "does not exist" in result.stderr
