"""`anytime verify --in IN.jsonl --out OUT.jsonl`: grade a file of responses, one verdict per line.

Input lines: `{"id", "response", "ground_truth", "thinking_closed"}` (`thinking_closed` defaults to false;
an optional `ended_in_eos`, default false, marks a thinking prefix that ended in EOS). Output lines:
`{"id", "status", "formatted", "reward", "extracted"}` (+ `"message"` when there is one), one per input
line, in input order. A malformed line gets status `error` and a message saying what is wrong; it never
stops the file. A summary table of statuses and throughput goes to stderr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import typer
from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from anytime.errors import InputError, SetupError
from anytime.verdict import Status
from anytime.verification.pool import GraderStartError
from anytime.verification.settings import VerifierSettings
from anytime.verification.verifier import Submission, Verdict, Verifier, VerifierStats

CHUNK_LINES = 4096  # lines graded per batch: bounded memory, output written as it goes
ERROR_CHARS = 300


class InputLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | int
    response: str
    ground_truth: Any  # checked by the verifier, which says what a ground truth may be
    thinking_closed: StrictBool = False
    ended_in_eos: StrictBool = False


class MalformedLine(ValueError):
    def __init__(self, message: str, line_id: str | int | None = None) -> None:
        super().__init__(message)
        self.line_id = line_id


def parse_line(raw: bytes, number: int) -> InputLine:
    """One input line, or `MalformedLine` saying what is wrong with it (and its id, when it has one)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedLine(f"line {number} is not valid UTF-8 (byte {error.start})") from None
    if not text.strip():
        raise MalformedLine(f"line {number} is empty")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedLine(f"line {number} is not JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(record, dict):
        raise MalformedLine(f"line {number} is not a JSON object")
    line_id = record.get("id")
    try:
        return InputLine.model_validate(record)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'line'}: {e['msg']}" for e in error.errors()
        )
        raise MalformedLine(
            f"line {number}: {problems} (fields: id, response, ground_truth, thinking_closed, ended_in_eos)"[
                :ERROR_CHARS
            ],
            line_id if isinstance(line_id, str | int) else None,
        ) from None


def _chunks(source: BinaryIO) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for number, raw in enumerate(source, start=1):
        chunk.append((number, raw.rstrip(b"\r\n")))
        if len(chunk) == CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def verify_file(source: BinaryIO, sink: TextIO, verifier: Verifier) -> int:
    """Grade every line of `source` into `sink`; returns the number of lines. Counts go to verifier.stats."""
    lines = 0
    for chunk in _chunks(source):
        parsed: list[InputLine | MalformedLine] = []
        for number, raw in chunk:
            try:
                parsed.append(parse_line(raw, number))
            except MalformedLine as malformed:
                parsed.append(malformed)
        good = [p for p in parsed if isinstance(p, InputLine)]
        graded = iter(
            verifier.grade_many(
                [Submission(p.response, p.ground_truth, p.thinking_closed, p.ended_in_eos) for p in good]
            )
        )
        for item in parsed:
            line_id: str | int | None
            if isinstance(item, InputLine):
                line_id, verdict = item.id, next(graded)
            else:
                line_id, verdict = item.line_id, Verdict.error(str(item))
                verifier.stats.count(verdict)
            sink.write(json.dumps({"id": line_id, **verdict.to_dict()}) + "\n")
        lines += len(chunk)
    return lines


def summary_table(stats: VerifierStats, lines: int, seconds: float, settings: str, restarts: int = 0) -> str:
    rate = lines / max(seconds, 1e-9)
    rows = [
        f"verified {lines} lines in {seconds:.2f} s: {rate:.1f} verdicts/s ({settings})",
        f"  {'status':<12} {'count':>8} {'share':>7}",
    ]
    for status in Status:
        count = stats.statuses[status.value]
        rows.append(f"  {status.value:<12} {count:>8} {count / max(lines, 1):>7.1%}")
    rows.append(f"  {'reward 1':<12} {stats.rewarded:>8} {stats.rewarded / max(lines, 1):>7.1%}")
    rows.append(f"  {'formatted':<12} {stats.formatted:>8} {stats.formatted / max(lines, 1):>7.1%}")
    lookups = stats.cache_hits + stats.cache_misses
    rows.append(
        f"  cache hit rate {stats.hit_rate:.1%} ({stats.cache_hits} of {lookups} answers; "
        f"{stats.plain_numbers} plain numbers decided without grading); "
        f"longest grading {stats.max_grading_seconds:.2f} s; grader processes replaced {restarts}"
    )
    return "\n".join(rows)


def run_verify(in_path: Path, out_path: Path, timeout_s: float | None, workers: int | None) -> VerifierStats:
    """The `anytime verify` command once its options are parsed."""
    try:
        settings = VerifierSettings()
    except ValueError as error:  # pydantic's ValidationError: a bad ANYTIME_VERIFIER_* variable
        raise InputError(f"bad verifier setting: {' '.join(str(error).split())}") from None
    timeout_s = settings.timeout_seconds if timeout_s is None else timeout_s
    workers = settings.workers if workers is None else workers
    if not timeout_s > 0:
        raise InputError(f"--timeout must be a positive number of seconds; got {timeout_s}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1; got {workers}")
    if not in_path.is_file():
        raise InputError(f"input file {in_path} not found; give a JSON-lines file of responses with --in")
    if not out_path.parent.is_dir():
        raise InputError(f"output folder {out_path.parent} does not exist; create it or choose another --out")
    if out_path.resolve() == in_path.resolve():
        raise InputError("--out must differ from --in (the input would be overwritten while read)")
    started = time.perf_counter()
    try:
        with (
            Verifier(
                timeout_s=timeout_s,
                workers=workers,
                cache_size=settings.cache_size,
                max_answer_chars=settings.max_answer_chars,
            ) as verifier,
            in_path.open("rb") as source,
            out_path.open("w", encoding="utf-8") as sink,
        ):
            lines = verify_file(source, sink, verifier)
    except GraderStartError as error:
        raise SetupError(str(error)) from None
    seconds = time.perf_counter() - started
    described = f"{workers} grader processes, timeout {timeout_s:g} s"
    typer.echo(summary_table(verifier.stats, lines, seconds, described, verifier.pool.restarts), err=True)
    return verifier.stats
