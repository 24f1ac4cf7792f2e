"""`anytime`: build the tiny model, make synthetic data, warm-start, evaluate, run the demo."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from anytime.problems import ProblemColumns
from anytime_cli.demo import EVAL_PROBLEMS, RUN_STEPS
from anytime_cli.errors import CliError
from anytime_cli.experiments import experiment_app
from anytime_cli.runs import runs_app
from anytime_cli.study import study_app

app = typer.Typer(
    help="Anytime: train and serve reasoners that answer well at any token budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are shown as written: Rich markup would eat "[env: ANYTIME_API_URL]" and the like.
    rich_markup_mode=None,
)
model_app = typer.Typer(help="Build models.", no_args_is_help=True)
data_app = typer.Typer(help="Make data sets.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
app.add_typer(experiment_app, name="experiment")
app.add_typer(study_app, name="study")


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"anytime {version('anytime')}")
        except PackageNotFoundError:
            raise CliError("the anytime package is not installed; run `make install`") from None
        raise typer.Exit()


@app.callback()
def options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show libraries' request logs (httpx, MLflow, …).")
    ] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the installed version and exit."
        ),
    ] = False,
) -> None:
    """Anytime: train and serve reasoners that answer well at any token budget."""
    from anytime.logging import show_library_logs

    show_library_logs(verbose)


def parse_budgets(text: str) -> list[int]:
    try:
        budgets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(
            f"--budgets must be comma-separated integers, e.g. 32,64,96,128; got {text!r}"
        ) from None
    from anytime.brpo.budgets import check_budgets

    try:
        return list(check_budgets(budgets))
    except ValueError as err:
        raise CliError(f"--{err}") from None


# `--columns` of the commands that read problem sets, parsed by `problem_columns`.
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        help="Where the records keep the problem and answer: deepscaler (problem / answer), verl "
        "(prompt / reward_model.ground_truth), math (problem / the last \\boxed{} of solution), or JSON "
        '{"problem": ..., "answer": ..., "answer_from": "value" | "last_boxed"} [default: deepscaler].'
    ),
]


class ChatFormat(StrEnum):
    """`anytime.tinymodel.chat_formats.ChatFormatName`, as the command line offers it."""

    TINY = "tiny"
    R1 = "r1"


@model_app.command("tiny")
def model_tiny(
    out: Annotated[Path, typer.Option(help="Folder to write the model to (Hugging Face format).")],
    seed: Annotated[int, typer.Option(help="Seed for the tokenizer corpus and the weights.")] = 0,
    chat: Annotated[
        ChatFormat,
        typer.Option(
            help="The tokenizer's chat template and special tokens: the project's own, or R1-Distill's "
            "(<｜User｜>…<｜Assistant｜><think>, as the paper's model sees its prompts)."
        ),
    ] = ChatFormat.TINY,
) -> None:
    """Build the tiny reasoner (tokenizer + ~3M-parameter Qwen2) with no network."""
    from anytime.tinymodel.build import TinyModelSpec, build_tiny_model

    path = build_tiny_model(out, seed=seed, spec=TinyModelSpec(chat_format=chat.value))
    typer.echo(f"tiny model written to {path}")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="JSON-lines file to write.")],
    task: Annotated[str, typer.Option(help="Synthetic task name.")] = "digit-chain",
    n: Annotated[int, typer.Option(min=1, help="Number of problems.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    split: Annotated[
        str, typer.Option(help="train (draws may repeat) or eval (distinct held-out problems).")
    ] = "train",
) -> None:
    """Write N synthetic problems with answers and worked traces: {id, problem, answer, trace}.

    Train and eval problems come from disjoint splits of the task's problem space (a hash of the text)."""
    from anytime.problems import write_problems
    from anytime.synth import SPLITS, get_task

    chosen = next((s for s in SPLITS if s == split), None)
    if chosen is None:
        raise CliError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    try:
        problems = get_task(task).generate(n, seed, split=chosen)
    except ValueError as err:
        raise CliError(str(err)) from None
    count = write_problems(problems, out)
    typer.echo(f"{count} {task} problems ({chosen} split) written to {out}")


@app.command("sft")
def sft(
    model: Annotated[Path, typer.Option(help="Model folder to start from.")],
    data: Annotated[Path, typer.Option(help="Problems with traces (.jsonl or .json).")],
    out: Annotated[Path, typer.Option(help="Folder to write the warm-started model to.")],
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 500,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Supervised warm start: think inside <think> … </think>, answer as **Final Answer** \\boxed{}."""
    from anytime_cli.commands import run_sft

    run_sft(model, data, out, steps=steps, batch_size=batch_size, lr=lr, seed=seed)


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option(help="Model folder.")],
    data: Annotated[Path, typer.Option(help="Problems: .jsonl, .json or .parquet, or a dataset folder.")],
    budgets: Annotated[
        str, typer.Option(help="Thinking budgets, comma-separated, increasing.")
    ] = "32,64,96,128",
    n: Annotated[int, typer.Option(min=1, help="Evaluate the first N problems.")] = 200,
    summary_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per summary.")] = 24,
    columns: ColumnsOption = None,
) -> None:
    """Anytime accuracy: one greedy thought per problem, a summary at every budget."""
    parsed = parse_budgets(budgets)  # before the heavy imports, so bad input fails fast
    layout = problem_columns(columns)
    from anytime_cli.commands import run_eval

    run_eval(model, data, parsed, n=n, summary_max_tokens=summary_tokens, columns=layout)


@app.command("demo")
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the demo's model, data, stack and runs.")] = Path(
        "build/demo"
    ),
    steps: Annotated[int, typer.Option(min=1, help="Warm-start steps.")] = 450,
    run_steps: Annotated[int, typer.Option(min=1, help="Steps of each BRPO/GRPO run.")] = RUN_STEPS,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """The embedded default end to end: warm start, the stack, BRPO and GRPO runs over REST, their curves."""
    from anytime_cli.demo import run_demo

    run_demo(workdir, warm_steps=steps, run_steps=run_steps, seed=seed)


@app.command("science")
def science(
    workdir: Annotated[Path, typer.Option(help="Folder for the model, data, stack and report.")] = Path(
        "build/science"
    ),
    steps: Annotated[int, typer.Option(min=1, help="Warm-start steps.")] = 450,
    run_steps: Annotated[int, typer.Option(min=1, help="Steps of each run.")] = RUN_STEPS,
    seeds: Annotated[
        str, typer.Option(help="Comma-separated seeds (one paired run per arm and seed).")
    ] = "0,1,2,3,4,5",
    eval_problems: Annotated[
        int, typer.Option(min=1, help="Held-out problems per evaluation.")
    ] = EVAL_PROBLEMS,
) -> None:
    """The default experiment: the paper's ablations (GRPO, GRPO+linear, GRPO+decouple, BRPO and BRPO with
    the V2 baseline) on the task with headroom, paired over seeds, with a report (95 % intervals, paired
    differences, variance ratios). Stopped, the same command carries the experiment on."""
    from anytime_cli.science import run_science

    try:
        parsed = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {seeds!r}") from None
    run_science(workdir, warm_steps=steps, run_steps=run_steps, seeds=parsed, eval_problems=eval_problems)


@app.command("verify")
def verify(
    in_path: Annotated[
        Path, typer.Option("--in", help="JSON lines: {id, response, ground_truth, thinking_closed}.")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", help="JSON lines: {id, status, formatted, reward, extracted}.")
    ],
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Hard limit per answer in seconds [env: ANYTIME_VERIFIER_TIMEOUT_SECONDS; default: 10]."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Grader processes [env: ANYTIME_VERIFIER_WORKERS; default: 2].")
    ] = None,
) -> None:
    """Grade responses with math-verify under a hard time limit; a summary of statuses goes to stderr."""
    from services.verifier.batch_cli import run_verify

    run_verify(in_path, out_path, timeout_s=timeout, workers=workers)


@app.command("rollout")
def rollout(
    model: Annotated[Path, typer.Option(help="Model folder (Hugging Face format).")],
    data: Annotated[Path, typer.Option(help="Problems: .jsonl, .json or .parquet, or a dataset folder.")],
    out: Annotated[Path, typer.Option(help="JSON lines to write: one trajectory per trace.")],
    budgets: Annotated[
        str, typer.Option(help="Thinking budgets, comma-separated, increasing.")
    ] = "64,128,192,256",
    group: Annotated[int, typer.Option(min=1, help="G: thinking traces per problem.")] = 4,
    summaries: Annotated[int, typer.Option(min=1, help="A: summaries per (trace, budget).")] = 4,
    summary_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per summary.")] = 32,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 samples greedily.")] = 1.0,
    n: Annotated[int | None, typer.Option(min=1, help="Only the first N problems.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    engine: Annotated[
        str | None,
        typer.Option(help="transformers | vllm [env: ANYTIME_ROLLOUT_ENGINE; default: transformers]."),
    ] = None,
    run_id: Annotated[str, typer.Option(help="Run id written into each trajectory.")] = "cli",
    columns: ColumnsOption = None,
) -> None:
    """Anytime rollouts: G thoughts per problem, cut at every budget, A summaries per budget."""
    parsed = parse_budgets(budgets)
    layout = problem_columns(columns)
    if engine not in (None, "transformers", "vllm"):
        raise CliError(f"--engine must be 'transformers' or 'vllm'; got {engine!r}")
    from services.rollout.cli import rollout_config, run_rollout

    config = rollout_config(parsed, group, summaries, summary_tokens, temperature)
    run_rollout(model, data, out, config, engine, n, seed, run_id, layout)  # type: ignore[arg-type]


@app.command("up")
def up(
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the REST API.")] = 8000,
    mlflow_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the MLflow UI.")] = 5000,
    home: Annotated[
        Path | None, typer.Option(help="State folder [env: ANYTIME_HOME; default: build].")
    ] = None,
    serve: Annotated[
        Path | None,
        typer.Option(help='A model folder to serve as model "anytime" (e.g. build/demo/tiny-sft).'),
    ] = None,
    rollout_workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="Rollout worker processes; a step's rollout is shared among them."),
    ] = 1,
) -> None:
    """Start the whole platform locally (redis-server, workers, API, MLflow UI) until Ctrl-C; prints the
    export line that points the CLI at it."""
    from anytime.settings import get_common_settings
    from anytime_cli.up import run_up

    run_up(home or get_common_settings().home, api_port, mlflow_port, serve, rollout_workers)


def problem_columns(text: str | None) -> ProblemColumns:
    """`--columns` parsed (unset: the default layout); a bad value is one line and exit code 2."""
    from anytime.problems import DEFAULT_COLUMNS, parse_columns

    if text is None:
        return DEFAULT_COLUMNS
    try:
        return parse_columns(text)
    except ValueError as err:
        raise CliError(str(err)) from None


def one_line(message: str) -> str:
    return " ".join(message.split()) or "failed without a message"


def main() -> None:
    """Entry point: usage errors and CliErrors become one line on stderr and exit code 2."""
    from anytime.logging import configure_logging
    from anytime.settings import get_common_settings

    try:
        settings = get_common_settings()
    except ValueError as err:  # pydantic's ValidationError: a bad ANYTIME_* variable
        typer.echo(f"anytime: error: bad setting: {' '.join(str(err).split())}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    try:
        result = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("anytime: aborted", err=True)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as err:
        message = err.format_message()
        if message:  # empty when the help was shown for a bare group (`anytime data`)
            typer.echo(f"anytime: error: {message}", err=True)
        sys.exit(2)
    except CliError as err:
        typer.echo(f"anytime: error: {one_line(str(err))}", err=True)
        sys.exit(2)
    except OSError as err:  # a file or a socket the command needed: say which, without a traceback
        typer.echo(f"anytime: error: {one_line(str(err))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("anytime: interrupted", err=True)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
