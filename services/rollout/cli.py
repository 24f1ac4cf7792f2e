"""`anytime rollout`: anytime rollouts of a problem file to trajectory JSON lines (one per trace)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import typer

from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.errors import InputError
from anytime.problems import DEFAULT_COLUMNS, ProblemColumns, ProblemSetError, load_problems
from services.engines.factory import EngineKind, make_engine
from services.rollout.anytime_rollout import rollout
from services.rollout.settings import RolloutSettings


def run_rollout(
    model_dir: Path,
    data: Path,
    out: Path,
    config: RolloutConfig,
    engine_kind: EngineKind | None,
    limit: int | None,
    seed: int,
    run_id: str,
    columns: ProblemColumns = DEFAULT_COLUMNS,
) -> int:
    try:
        problems = load_problems(data, columns)[:limit]
    except ProblemSetError as err:
        raise InputError(str(err)) from None
    settings = RolloutSettings()
    kind = engine_kind or settings.engine
    try:
        engine = make_engine(kind, model_dir, settings)
    except FileNotFoundError as err:
        raise InputError(f"{err}; build one with `anytime model tiny --out DIR`") from None
    try:
        started = time.perf_counter()
        trajectories = rollout(engine, problems, config, run_id=run_id, step=0, seed=seed)
        seconds = time.perf_counter() - started
    finally:
        engine.close()
    # Written next to the target and renamed: an interrupted run leaves no half-written file.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{out.name}.", delete=False) as tmp:
        for trajectory in trajectories:
            tmp.write(trajectory.model_dump_json() + "\n")
    os.replace(tmp.name, out)
    thinking = sum(len(t.thinking_ids) for t in trajectories)
    summaries = sum(len(s.ids) for t in trajectories for c in t.cuts for s in c.summaries)
    typer.echo(
        f"{len(trajectories)} traces of {len(problems)} problems ({kind} engine) in {seconds:.1f} s: "
        f"{thinking} thinking + {summaries} summary tokens; written to {out}"
    )
    return len(trajectories)


def rollout_config(
    budgets: list[int],
    group: int,
    summaries: int,
    summary_max_tokens: int,
    temperature: float,
) -> RolloutConfig:
    from pydantic import ValidationError

    try:
        return RolloutConfig(
            budgets=tuple(budgets),
            group_size=group,
            num_summaries=summaries,
            summary_max_tokens=summary_max_tokens,
            sampling=SamplingConfig(temperature=temperature),
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise InputError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
