"""`anytime study variance`: the paper's variance analysis (Figure 3) of a policy, measured in one rollout.

The paper's setup by default: the untrained policy, λ = 1/2 (`--discount 2.0`), a uniform prior over 8
budgets `b_max * j / 8`. One anytime rollout of N problems × G traces × A summaries per budget, graded by the
project's verifier; then, per budget t, for the V1-only, V2-only (GRPO-like) and BRPO baselines
(`anytime.brpo.variance`, which defines R and V): the correlation Corr(V, R) and the normalized variance
Var(R − V)/Var(R) over the traces that still think at t, each with a percentile interval from resampling
problems (one set of resamples for both). It prints the table, the ordering of the three ratios at the
largest t against the paper's BRPO ≤ V1 < V2, and how long the thoughts are (the comparison only means
something where they are long); it writes `variance.json` (every number) and `variance.png` (the paper's two
panels) to `--out`.

This module imports only typer and pydantic; the rollout, verifier and torch load inside the command.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import BRPOConfig
from anytime.run_config import RunConfig
from anytime_cli.errors import CliError

if TYPE_CHECKING:
    from anytime.brpo.variance import Estimate, VarianceStudy
    from anytime.trajectory import Trajectory
    from anytime.verdict import VerdictRecord

study_app = typer.Typer(
    help="Measure a policy outside training (the paper's analyses).", no_args_is_help=True
)

# Figure 3 of the paper (docs/method.md §5.5): R1-Distill-Qwen-1.5B, untrained, AMC, at t = 8000.
PAPER_FIGURE_3 = {"v1": 0.36, "v2": 0.61, "brpo": 0.34}
PAPER_FIGURE_3_CORR = {"v1": 0.81, "v2": 0.64}  # BRPO's stays at ≈0.82–0.91 over all t
PAPER_SOURCE = "paper, AMC, R1-Distill-Qwen-1.5B, t = 8000"
FIGURE_3_NUM_BUDGETS = 8  # the paper's uniform prior over {1000, …, 8000}
NAMES = ("v1", "v2", "brpo")  # the figure's order
LABELS = {"v1": "V1", "v2": "V2", "brpo": "BRPO"}
PLOT_LABELS = {"v1": "V1 only", "v2": "V2 only (GRPO-like)", "brpo": "BRPO"}
# The run defaults of the embedded CPU default (the `tiny-cpu` preset).
_RUN_DEFAULTS = RunConfig(model="-", dataset="-").method
_PAPER_DEFAULTS = BRPOConfig()  # the paper's G, A and discount
_EQUAL = 1e-9  # ratios this close are the same number (BRPO = V2 at the first budget, up to rounding)


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
    num_budgets: Annotated[
        int, typer.Option(min=1, help="S: budgets b_max * j / S (the paper's Figure 3: 8).")
    ] = FIGURE_3_NUM_BUDGETS,
    prior: Annotated[PriorKind, typer.Option(help="The prior of the returns R.")] = PriorKind.UNIFORM,
    discount: Annotated[
        float, typer.Option(help="V1 weighs earlier budget j by discount**j (the paper's λ = 1/discount).")
    ] = _PAPER_DEFAULTS.discount,
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
    """Per-budget Corr(V, R) and Var(R − V)/Var(R) of the V1, V2 and BRPO baselines, as in Figure 3."""
    if engine not in (None, "transformers", "vllm"):
        raise CliError(f"--engine must be 'transformers' or 'vllm'; got {engine!r}")
    try:  # before the heavy imports, so a bad grid fails fast
        config = BRPOConfig(
            b_max=b_max,
            num_budgets=num_budgets,
            num_summaries=summaries,
            prior=prior,
            discount=discount,
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
    rollout_config = RolloutConfig(
        budgets=prior.budgets,
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
    report = {
        "model": str(model_dir),
        "data": str(data),
        "problems": len(groups),
        "group": config.group_size,
        "summaries": config.resolved_num_summaries,
        "budgets": list(prior.budgets),
        "probs": list(prior.probs),
        "prior": (config.prior or PriorKind.UNIFORM).value,
        "discount": config.discount,
        "summary_tokens": config.summary_max_tokens,
        "temperature": temperature,
        "seed": seed,
        "engine": kind,
        "accuracy": torch.cat(rewards).mean(dim=(0, 2)).tolist(),
        "statuses": statuses,
        "thinking": thinking_stats(
            [len(t.thinking_ids) for t in trajectories],
            [t.finish_reason for t in trajectories],
            prior.budgets,
        ),
        **study_record(study, prior.budgets),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "variance.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "variance.png").write_bytes(figure_png(report, model_dir.name))
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


def thinking_stats(lengths: Sequence[int], finishes: Sequence[str], budgets: Sequence[int]) -> dict[str, Any]:
    """How long the thoughts are: length quantiles, how they ended, and the share longer than each budget.

    `past_budget[j]` is the share of traces with more than b_j thinking tokens, i.e. that still think when
    budget j + 1's segment starts (the mask of budget j + 1); `past_fourth_budget` is `past_budget[3]`.
    """
    if not lengths:
        raise ValueError("no traces")
    ordered = sorted(lengths)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    past = [sum(n > b for n in lengths) / len(lengths) for b in budgets]
    return {
        "traces": len(lengths),
        "mean": statistics.fmean(lengths),
        "min": ordered[0],
        "p25": quartiles[0],
        "median": quartiles[1],
        "p75": quartiles[2],
        "max": ordered[-1],
        "finish": {reason: finishes.count(reason) / len(finishes) for reason in sorted(set(finishes))},
        "past_budget": past,
        "past_fourth_budget": past[3] if len(past) >= 4 else None,
    }


def _estimate(e: Estimate) -> dict[str, Any]:
    return {"value": e.value, "low": e.low, "high": e.high}


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def _disjoint(lower: dict[str, Any], upper: dict[str, Any]) -> bool | None:
    """Whether `lower`'s interval lies wholly below `upper`'s; None where either is undefined."""
    if lower["high"] is None or upper["low"] is None:
        return None
    return bool(lower["high"] < upper["low"])


def study_record(study: VarianceStudy, budgets: Sequence[int]) -> dict[str, Any]:
    """The study as JSON: per budget the correlation and ratio of each baseline, the ratio summary, and the
    comparisons the paper makes (the ordering at the largest budget, BRPO = V2 and V1 = 1 at the first)."""
    per_budget: list[dict[str, Any]] = [
        {
            "budget": budget,
            "traces": study.ratios[NAMES[0]][j].traces,
            **{
                name: {
                    "corr": _estimate(study.correlations[name][j]),
                    "ratio": _estimate(study.ratios[name][j]),
                }
                for name in NAMES
            },
        }
        for j, budget in enumerate(budgets)
    ]
    last = per_budget[-1]
    ratios: dict[str, float | None] = {name: last[name]["ratio"]["value"] for name in NAMES}
    brpo, v1, v2 = (ratios[name] for name in ("brpo", "v1", "v2"))
    holds = None if brpo is None or v1 is None or v2 is None else brpo <= v1 < v2
    first = per_budget[0]
    first_brpo, first_v2 = first["brpo"]["ratio"]["value"], first["v2"]["ratio"]["value"]
    return {
        "resamples": study.resamples,
        "level": study.level,
        "mask": "budget index s keeps the traces with s == 0 or more than b_{s-1} thinking tokens",
        "per_budget": per_budget,
        "summary": {name: _estimate(study.summary[name]) for name in NAMES},
        "largest": {
            "budget": last["budget"],
            "order": sorted(NAMES, key=lambda n: _or_inf(ratios[n])),
            "paper_order_holds": holds,
            "intervals_separate": {
                "brpo_v1": _disjoint(last["brpo"]["ratio"], last["v1"]["ratio"]),
                "v1_v2": _disjoint(last["v1"]["ratio"], last["v2"]["ratio"]),
            },
            "paired_difference": {
                "v1_minus_brpo": _estimate(study.ratio_difference("v1", "brpo", len(budgets) - 1)),
                "v2_minus_v1": _estimate(study.ratio_difference("v2", "v1", len(budgets) - 1)),
            },
        },
        "first": {
            "budget": first["budget"],
            "brpo_equals_v2": None
            if first_brpo is None or first_v2 is None
            else abs(first_brpo - first_v2) <= _EQUAL,
            "v1_ratio": first["v1"]["ratio"]["value"],
        },
        "paper": {
            "source": PAPER_SOURCE,
            "ratio": PAPER_FIGURE_3,
            "corr": PAPER_FIGURE_3_CORR,
            "brpo_corr_range": [0.82, 0.91],
        },
    }


def figure_png(report: dict[str, Any], model_name: str) -> bytes:
    """The paper's Figure 3 from a report: Corr(V, R) left, Var(R − V)/Var(R) right, banded per baseline."""
    from anytime.variance_plot import Banded, BaselineSeries, variance_png

    def banded(name: str, stat: str) -> Banded:
        cells = [row[name][stat] for row in report["per_budget"]]
        return Banded([c["value"] for c in cells], [c["low"] for c in cells], [c["high"] for c in cells])

    series = [
        BaselineSeries(PLOT_LABELS[n], report["budgets"], banded(n, "corr"), banded(n, "ratio"))
        for n in NAMES
    ]
    title = (
        f"{model_name}: {report['problems']} problems × G={report['group']} × A={report['summaries']}, "
        f"T={report['temperature']}, {report['prior']} prior over {len(report['budgets'])} budgets, "
        f"λ = 1/{report['discount']:g}; {round(report['level'] * 100)}% bootstrap bands"
    )
    return variance_png(series, title)


_WIDTH = 20


def _cell(e: dict[str, Any], digits: int = 2) -> str:
    if e["value"] is None:
        return f"{'—':<{_WIDTH}}"
    interval = "" if e["low"] is None else f" [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    return f"{e['value']:.{digits}f}{interval}".ljust(_WIDTH)


def _named(name: str, e: dict[str, Any]) -> str:
    """`NAME value [low, high]` with three decimals: BRPO and V1 differ little at the largest budget."""
    return f"{LABELS[name]} {_cell(e, 3).rstrip()}"


def _ordering_line(report: dict[str, Any]) -> str:
    largest = report["largest"]
    last = report["per_budget"][-1]
    order = largest["order"]
    ratio = {n: last[n]["ratio"] for n in NAMES}
    parts = [_named(order[0], ratio[order[0]])]
    for below, above in itertools.pairwise(order):
        a, b = ratio[below]["value"], ratio[above]["value"]
        relation = "?" if a is None or b is None else ("=" if abs(a - b) <= _EQUAL else "<")
        parts.append(f"{relation} {_named(above, ratio[above])}")
    verdict = {True: "holds", False: "does not hold", None: "cannot be decided (a ratio is undefined)"}
    return (
        f"at t = {largest['budget']}: {' '.join(parts)}: the paper's ordering BRPO ≤ V1 < V2 "
        f"{verdict[largest['paper_order_holds']]} (point estimates)"
    )


def _separation_line(report: dict[str, Any]) -> str:
    largest = report["largest"]
    words = {True: "separate", False: "overlap", None: "undefined"}
    separate, paired = largest["intervals_separate"], largest["paired_difference"]
    return (
        f"  {round(report['level'] * 100)}% intervals: BRPO vs V1 {words[separate['brpo_v1']]}, "
        f"V1 vs V2 {words[separate['v1_v2']]}; paired over the same resamples: "
        f"V1 − BRPO {_cell(paired['v1_minus_brpo'], 3).rstrip()}, "
        f"V2 − V1 {_cell(paired['v2_minus_v1'], 3).rstrip()}"
    )


def _first_line(report: dict[str, Any]) -> str:
    first = report["first"]
    row = report["per_budget"][0]
    same = {True: "=", False: "≠", None: "?"}[first["brpo_equals_v2"]]
    v1 = "—" if first["v1_ratio"] is None else f"{first['v1_ratio']:.2f}"
    return (
        f"at t = {first['budget']}: BRPO {same} V2 ({_cell(row['brpo']['ratio']).rstrip()} vs "
        f"{_cell(row['v2']['ratio']).rstrip()}), V1 ratio {v1}, Corr(V1, R) "
        f"{'undefined (V1 = 0)' if row['v1']['corr']['value'] is None else _cell(row['v1']['corr']).rstrip()}"
        " (the paper: BRPO = V2, V1 = 1.0)"
    )


def _thinking_line(report: dict[str, Any]) -> str:
    t = report["thinking"]
    budgets = report["budgets"]
    finish = ", ".join(f"{reason} {share:.0%}" for reason, share in t["finish"].items())
    past = " ".join(f"{b}:{share:.0%}" for b, share in zip(budgets, t["past_budget"], strict=True))
    fourth = (
        ""
        if t["past_fourth_budget"] is None
        else f"; past the 4th budget (t = {budgets[3]}): {t['past_fourth_budget']:.0%} of traces"
    )
    return (
        f"thoughts: {t['traces']} traces, length mean {t['mean']:.1f}, median {t['median']:g}, "
        f"p25 {t['p25']:g}, p75 {t['p75']:g}, max {t['max']} tokens; ended by {finish}{fourth}\n"
        f"  share longer than each budget: {past}"
    )


def format_table(report: dict[str, Any]) -> list[str]:
    """The study as text: one row per budget with `value [low, high]` of Corr(V, R) and Var(R − V)/Var(R)
    for each baseline, the summary row, the ordering at the largest budget, the first budget, the thoughts."""
    level = round(report["level"] * 100)
    heads = "".join(f"{LABELS[n] + ' ' + stat:<{_WIDTH}}" for n in NAMES for stat in ("corr", "ratio"))
    lines = [
        f"Corr(V, R) and Var(R − V)/Var(R) over the traces still thinking at each budget t; {level}% "
        f"intervals from {report['resamples']} resamples of {report['problems']} problems "
        f"(G={report['group']}, A={report['summaries']}, T={report['temperature']}, {report['prior']} prior, "
        f"discount {report['discount']:g})",
        f"{'t':>6} {'traces':>7} {'accuracy':>9}  {heads}".rstrip(),
    ]
    for j, row in enumerate(report["per_budget"]):
        cells = "".join(_cell(row[n][stat]) for n in NAMES for stat in ("corr", "ratio"))
        lines.append(f"{row['budget']:>6} {row['traces']:>7} {report['accuracy'][j]:>9.3f}  {cells}".rstrip())
    summary = report["summary"]
    total = sum(row["traces"] for row in report["per_budget"])
    lines.append(
        f"{'all':>6} {total:>7} {'':>9}  "
        + "".join(f"{'':<{_WIDTH}}{_cell(summary[n])}" for n in NAMES).rstrip()
        + "  (ratio: mean over budgets, weighted by traces)"
    )
    lines.append(_ordering_line(report))
    lines.append(_separation_line(report))
    lines.append(_first_line(report))
    paper = report["paper"]
    lines.append(
        f"{paper['source']}: ratio "
        + ", ".join(f"{LABELS[n]} {paper['ratio'][n]:.2f}" for n in NAMES)
        + "; corr "
        + ", ".join(f"{LABELS[n]} {v:.2f}" for n, v in paper["corr"].items())
        + f", BRPO {paper['brpo_corr_range'][0]:.2f}–{paper['brpo_corr_range'][1]:.2f}"
    )
    lines.extend(_thinking_line(report).split("\n"))
    lines.append(f"summaries graded: {report['statuses']}")
    return lines
