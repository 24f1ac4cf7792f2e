"""What the CLI commands do, once their arguments are parsed (imports torch and transformers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.logging import get_logger
from anytime.model_facts import ModelFacts
from anytime.problems import DEFAULT_COLUMNS, Problem, ProblemColumns, ProblemSetError, load_problems
from anytime.summary_format import SummaryFormat
from anytime_cli.errors import CliError


def check_model_dir(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise CliError(
            f"model folder {path} has no config.json; build one with `anytime model tiny --out {path}`"
        )


def load_model(path: Path) -> tuple[Any, Any]:
    check_model_dir(path)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def read_problems(path: Path, columns: ProblemColumns = DEFAULT_COLUMNS) -> list[Problem]:
    try:
        return load_problems(path, columns)
    except ProblemSetError as err:
        raise CliError(str(err)) from None


def run_sft(
    model_dir: Path, data: Path, out: Path, steps: int, batch_size: int, lr: float, seed: int
) -> float:
    from anytime.model_dir import save_model_dir
    from services.learner.warmstart import WarmStartConfig, build_examples, warm_start

    problems = read_problems(data)
    missing = [p.id for p in problems if p.trace is None]
    if missing:
        raise CliError(
            f"{len(missing)} problems in {data} have no trace (first: {missing[0]}); use synthetic data"
        )
    model, tokenizer = load_model(model_dir)
    fmt = SummaryFormat()
    facts = ModelFacts.from_tokenizer(tokenizer, fmt)
    config = WarmStartConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    examples = build_examples(problems, tokenizer, facts, fmt, config.cut_fraction, seed)
    with tqdm(total=steps, desc="warm start", unit="step") as bar:

        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        report = warm_start(model, examples, config, facts.pad_id, on_step)
    save_model_dir(model, tokenizer, out)
    get_logger(__name__, command="sft", model=str(model_dir), out=str(out)).info(
        "warm start finished",
        steps=report.steps,
        final_loss=report.final_loss,
        seconds=round(report.seconds, 1),
    )
    typer.echo(
        f"warm start: {report.steps} steps on {report.examples} examples in {report.seconds:.0f} s, "
        f"final loss {report.final_loss:.3f}; model written to {out}"
    )
    return report.seconds


def run_eval(
    model_dir: Path,
    data: Path,
    budgets: list[int],
    n: int,
    summary_max_tokens: int,
    columns: ProblemColumns = DEFAULT_COLUMNS,
) -> list[float]:
    from services.engines.transformers_engine import TransformersEngine
    from services.rollout.anytime_eval import evaluate_anytime

    problems = read_problems(data, columns)[:n]
    check_model_dir(model_dir)
    fmt = SummaryFormat()
    engine = TransformersEngine.from_model_dir(model_dir, fmt)
    result = evaluate_anytime(engine, problems, budgets, summary_max_tokens=summary_max_tokens)
    typer.echo(f"{'budget':>8} {'accuracy':>9}")
    for budget, accuracy in zip(result.budgets, result.accuracy, strict=True):
        typer.echo(f"{budget:>8} {accuracy:>9.3f}")
    typer.echo(
        f"problems {result.total}, anytime score (uniform) {result.anytime_score:.3f}, "
        f"mean thinking length {result.mean_thinking_length:.1f} tokens, "
        f"closed thoughts {result.closed}/{result.total}, summary statuses {dict(result.statuses)}"
    )
    return result.accuracy
