"""`anytime study variance`: the paper's variance analysis (Figure 3) of a policy, measured in one rollout.

One anytime rollout of N problems × G traces × A summaries per budget on the grid `b_max * j / S`, graded
by the project's verifier; then, per budget, `Var(Q − V)/Var(Q)` over the traces that still think there
(`anytime.brpo.variance`) for the BRPO, V1 and V2 baselines, with percentile intervals from resampling
problems. Writes `variance.json` (every number) and `variance.png` (ratio against budget, one banded line
per baseline) to `--out`, and prints the table next to the paper's.

This module imports only typer and pydantic; the rollout, verifier and torch load inside the command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import BRPOConfig
from anytime.run_config import RunConfig
from anytime_cli.errors import CliError

if TYPE_CHECKING:
    from anytime.brpo.variance import RatioEstimate, VarianceStudy
    from anytime.trajectory import Trajectory
    from anytime.verdict import VerdictRecord

study_app = typer.Typer(
    help="Measure a policy outside training (the paper's analyses).", no_args_is_help=True
)

# Figure 3 of the paper (docs/method.md §5.5): R1-Distill-Qwen-1.5B, untrained, AMC, at t = 8000.
PAPER_FIGURE_3 = {"v2": 0.61, "v1": 0.36, "brpo": 0.34}
PAPER_SOURCE = "paper, AMC, R1-Distill-Qwen-1.5B, t = 8000"
# The run defaults of the embedded CPU default (the `tiny-cpu` preset).
_RUN_DEFAULTS = RunConfig(model="-", dataset="-").method
_PAPER_DEFAULTS = BRPOConfig()  # the paper's G, S and A


@study_app.command("variance")
def variance(
    model: Annotated[Path, typer.Option(help="Model folder (Hugging Face format).")],
    data: Annotated[Path, typer.Option(help="Problems (.jsonl or .json).")],
    out: Annotated[Path, typer.Option(help="Folder for variance.json and variance.png.")] = Path(
        "build/variance-study"
    ),
    problems: Annotated[int, typer.Option(min=1, help="N: the first N problems.")] = 64,
    group: Annotated[int, typer.Option(min=1, help="G: thinking traces per problem.")] = (
        _PAPER_DEFAULTS.group_size
    ),
    summaries: Annotated[int, typer.Option(min=1, help="A: summaries per (trace, budget).")] = (
        _PAPER_DEFAULTS.resolved_num_summaries
    ),
    b_max: Annotated[
        int, typer.Option(min=1, help="The largest budget b_S (thinking tokens).")
    ] = _RUN_DEFAULTS.b_max,
    num_budgets: Annotated[int, typer.Option(min=1, help="S: budgets b_max * j / S.")] = (
        _PAPER_DEFAULTS.resolved_num_budgets
    ),
    prior: Annotated[PriorKind, typer.Option(help="The prior of the returns Q.")] = PriorKind.UNIFORM,
    summary_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per summary.")] = (
        _RUN_DEFAULTS.summary_max_tokens
    ),
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Sampling temperature (the authors': 0.6).")
    ] = 0.6,
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples of the problems.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seeds the rollout and the bootstrap.")] = 0,
    engine: Annotated[
        str | None, typer.Option(help="transformers | vllm [default: ANYTIME_ROLLOUT_ENGINE, transformers].")
    ] = None,
) -> None:
    """Per-budget variance ratios Var(Q − V)/Var(Q) of the BRPO, V1 and V2 baselines, as in Figure 3."""
    if engine not in (None, "transformers", "vllm"):
        raise CliError(f"--engine must be 'transformers' or 'vllm'; got {engine!r}")
    try:  # before the heavy imports, so a bad grid fails fast
        config = BRPOConfig(
            b_max=b_max,
            num_budgets=num_budgets,
            num_summaries=summaries,
            prior=prior,
            group_size=group,
            summary_max_tokens=summary_tokens,
        )
    except ValueError as err:
        raise CliError(" ".join(str(err).split())) from None
    report = run_variance_study(
        model,
        data,
        out,
        config,
        problems,
        temperature,
        resamples,
        seed,
        engine,
    )
    for line in format_table(report):
        typer.echo(line)
    typer.echo(f"written to {out / 'variance.json'} and {out / 'variance.png'}")


def run_variance_study(
    model_dir: Path,
    data: Path,
    out: Path,
    config: BRPOConfig,
    limit: int,
    temperature: float,
    resamples: int,
    seed: int,
    engine_kind: str | None = None,
) -> dict[str, Any]:
    """Roll out, grade, measure; writes variance.json and variance.png and returns the JSON record."""
    import torch

    from anytime.brpo.variance import bootstrap_study
    from anytime.contracts.rollout import RolloutConfig
    from anytime.contracts.sampling import SamplingConfig
    from anytime.problems import ProblemSetError, load_problems
    from anytime.variance_plot import RatioSeries, variance_ratio_png
    from services.engines.factory import EngineKind, make_engine
    from services.learner.batch import group_by_problem, trajectory_rewards
    from services.learner.metrics import problem_returns
    from services.rollout.anytime_rollout import rollout
    from services.rollout.settings import RolloutSettings

    try:
        problems = load_problems(data)[:limit]
    except ProblemSetError as err:
        raise CliError(str(err)) from None
    prior = config.budget_prior()
    budgets = prior.budgets
    rollout_config = RolloutConfig(
        budgets=budgets,
        group_size=config.group_size,
        num_summaries=config.resolved_num_summaries,
        summary_max_tokens=config.summary_max_tokens,
        sampling=SamplingConfig(temperature=temperature),
    )
    settings = RolloutSettings()
    kind = cast(EngineKind, engine_kind or settings.engine)
    try:
        engine = make_engine(kind, model_dir, settings)
    except FileNotFoundError as err:
        raise CliError(f"{err}; build one with `anytime model tiny --out DIR`") from None
    started = time.perf_counter()
    try:
        facts = engine.facts
        trajectories = rollout(engine, problems, rollout_config, run_id="study", step=0, seed=seed)
    finally:
        engine.close()
    verdicts, statuses = _grade(trajectories, facts.think_end_id, facts.eos_id)
    groups = group_by_problem(trajectories)
    rewards = [torch.tensor([trajectory_rewards(t, verdicts[t.id]) for t in g]) for g in groups]  # [G, S, A]
    per_problem = [
        problem_returns(r, [len(t.thinking_ids) for t in g], config, prior)
        for r, g in zip(rewards, groups, strict=True)
    ]
    study = bootstrap_study(per_problem, resamples=resamples, seed=seed)
    accuracy = torch.cat(rewards).mean(dim=(0, 2)).tolist()
    report = _report(model_dir, data, config, len(groups), temperature, seed, kind, accuracy, statuses, study)
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "variance.json").write_text(json.dumps(report, indent=2) + "\n")
    series = [
        RatioSeries(
            name,
            budgets,
            [e.ratio for e in estimates],
            [e.low for e in estimates],
            [e.high for e in estimates],
        )
        for name, estimates in study.per_budget.items()
    ]
    title = (
        f"{model_dir.name}: {len(groups)} problems × G={config.group_size} × "
        f"A={config.resolved_num_summaries}, T={temperature}, {round(study.level * 100)}% bootstrap bands"
    )
    (out / "variance.png").write_bytes(variance_ratio_png(series, title))
    return report


def _grade(
    trajectories: list[Trajectory], think_end_id: int, eos_id: int
) -> tuple[dict[str, dict[str, VerdictRecord]], dict[str, int]]:
    """Every summary through the project's verifier: verdict records by trajectory and summary id."""
    from anytime.verdict import VerdictRecord
    from anytime.verification.settings import VerifierSettings
    from anytime.verification.verifier import Submission, Verifier

    owners: list[tuple[str, str]] = []
    submissions: list[Submission] = []
    for t in trajectories:
        for c, cut in enumerate(t.cuts):
            closed, ended = t.prefix_ends_with(cut, think_end_id), t.prefix_ends_with(cut, eos_id)
            for s, sample in enumerate(cut.summaries):
                owners.append((t.id, t.summary_id(c, s)))
                submissions.append(Submission(sample.response, t.answer, closed, ended))
    with Verifier.from_settings(VerifierSettings()) as verifier:
        verdicts = verifier.grade_many(submissions)
    records: dict[str, dict[str, VerdictRecord]] = {t.id: {} for t in trajectories}
    statuses: dict[str, int] = {}
    for (tid, sid), verdict in zip(owners, verdicts, strict=True):
        records[tid][sid] = VerdictRecord.model_validate(verdict.to_dict())
        statuses[verdict.status.value] = statuses.get(verdict.status.value, 0) + 1
    return records, statuses


def _estimate(e: RatioEstimate) -> dict[str, Any]:
    return {"traces": e.traces, "ratio": e.ratio, "low": e.low, "high": e.high}


def _report(
    model_dir: Path,
    data: Path,
    config: BRPOConfig,
    problems: int,
    temperature: float,
    seed: int,
    engine: str,
    accuracy: list[float],
    statuses: dict[str, int],
    study: VarianceStudy,
) -> dict[str, Any]:
    prior = config.budget_prior()
    return {
        "model": str(model_dir),
        "data": str(data),
        "problems": problems,
        "group": config.group_size,
        "summaries": config.resolved_num_summaries,
        "budgets": list(prior.budgets),
        "probs": list(prior.probs),
        "discount": config.discount,
        "summary_tokens": config.summary_max_tokens,
        "temperature": temperature,
        "seed": seed,
        "engine": engine,
        "resamples": study.resamples,
        "level": study.level,
        "accuracy": accuracy,
        "statuses": statuses,
        "ratios": {
            name: [{"budget": b, **_estimate(e)} for b, e in zip(prior.budgets, estimates, strict=True)]
            for name, estimates in study.per_budget.items()
        },
        "summary": {name: _estimate(e) for name, e in study.summary.items()},
        "paper": {"source": PAPER_SOURCE, **PAPER_FIGURE_3},
    }


def _cell(e: dict[str, Any]) -> str:
    if e["ratio"] is None:
        return f"{'—':<21}"
    interval = "" if e["low"] is None else f" [{e['low']:.2f}, {e['high']:.2f}]"
    return f"{e['ratio']:.3f}{interval}".ljust(21)


def format_table(report: dict[str, Any]) -> list[str]:
    """The study as text: one row per budget and the summary row, cells `ratio [low, high]`."""
    names = list(report["ratios"])
    level = round(report["level"] * 100)
    lines = [
        f"Var(Q − V)/Var(Q) over traces still thinking at each budget; {level}% intervals from "
        f"{report['resamples']} resamples of {report['problems']} problems "
        f"(G={report['group']}, A={report['summaries']}, T={report['temperature']})",
        f"{'budget':>8} {'traces':>7} {'accuracy':>9}  " + "".join(f"{n:<21}" for n in names),
    ]
    for j, budget in enumerate(report["budgets"]):
        cells = "".join(_cell(report["ratios"][n][j]) for n in names)
        traces = report["ratios"][names[0]][j]["traces"]
        lines.append(f"{budget:>8} {traces:>7} {report['accuracy'][j]:>9.3f}  {cells}")
    summary = report["summary"]
    lines.append(
        f"{'summary':>8} {summary[names[0]]['traces']:>7} {'':>9}  "
        + "".join(_cell(summary[n]) for n in names)
    )
    paper = report["paper"]
    lines.append(f"{paper['source']}: " + ", ".join(f"{n} {paper[n]:.2f}" for n in names))
    lines.append(f"summaries graded: {report['statuses']}")
    return lines
