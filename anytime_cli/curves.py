"""What the CLI shows of a run's evaluations (`GET /v1/runs/{id}/curve`): tables, one-line summaries, the
phase a run is in, and the start-vs-end overlay of several runs drawn with `anytime.curve_plot`."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from anytime.curve_plot import CurveSeries, accuracy_vs_budget_png, series_label
from anytime_cli.errors import CliError

TERMINAL = {"succeeded", "failed", "cancelled"}


def setting(config: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A run config's value, at the top level or in one of its sections (the API returns it resolved)."""
    if name in config:
        return config[name]
    for section in config.values():
        if isinstance(section, Mapping) and name in section:
            return section[name]
    return default


def sampling(evaluation: Mapping[str, Any]) -> str:
    """How an evaluation was sampled: "greedy", "k=4, T=0.6", or "" for old rows that do not say."""
    temperature = evaluation.get("temperature")
    if temperature is None:
        return ""
    if temperature == 0:
        return "greedy"
    return f"k={evaluation.get('num_samples')}, T={temperature:g}"


def evaluation_line(evaluation: Mapping[str, Any]) -> str:
    """One evaluation on one line: accuracy per budget and the anytime score with its 95 % interval."""
    cells = " ".join(
        f"{b}:{a:.3f}" for b, a in zip(evaluation["budgets"], evaluation["accuracy"], strict=True)
    )
    score = evaluation.get("anytime_score")
    text = f"version {evaluation['policy_version']}: accuracy by budget {cells}"
    if score is not None:
        text += f", anytime {score:.3f}"
        low, high = evaluation.get("anytime_score_ci_low"), evaluation.get("anytime_score_ci_high")
        if low is not None and high is not None:
            text += f" [{low:.3f}, {high:.3f}]"
    how = sampling(evaluation)
    problems = evaluation.get("num_problems")
    details = ", ".join(part for part in (how, f"{problems} problems" if problems else "") if part)
    return text + (f" ({details})" if details else "")


def curve_table(curve: Mapping[str, Any]) -> list[str]:
    evaluations = curve.get("evaluations", [])
    if not evaluations:
        return ["no evaluations yet (set eval_dataset in the run config)"]
    budgets = evaluations[0]["budgets"]
    lines = [f"{'version':>7} " + " ".join(f"{b:>7}" for b in budgets) + "  anytime"]
    for ev in evaluations:
        cells = " ".join(f"{a:7.3f}" for a in ev["accuracy"])
        score = ev.get("anytime_score")
        lines.append(f"{ev['policy_version']:>7} {cells}  {'-' if score is None else f'{score:.3f}'}")
    return lines


def phase(run: Mapping[str, Any], evaluations: int) -> str:
    """What a run is doing now, from its status, last committed step and number of evaluations."""
    status = run["status"]
    if status != "running":
        return str(status)
    config = run.get("config", {})
    steps = int(setting(config, "steps", 0))
    done = int(run.get("step", -1)) + 1
    evaluated = setting(config, "eval_dataset") is not None
    if done == 0 and evaluated and evaluations == 0:
        return "evaluating the warm start…"
    if steps and done >= steps:
        return "final evaluation…" if evaluated else "finishing…"
    return f"step {done + 1}/{steps}: rollouts, grading, update…"


def overlay_series(curves: Mapping[str, Mapping[str, Any]]) -> list[CurveSeries]:
    """Each run's first (start) and last (end) evaluation, labelled `<name> start|end v<version>` with how
    they were sampled, and their 95 % intervals where the evaluation has them. `curves`: name → curve."""
    series = []
    for name, curve in curves.items():
        evaluations = list(curve.get("evaluations", []))
        first_and_last = evaluations[:1] + evaluations[1:][-1:]
        for label, ev in zip(("start", "end"), first_and_last, strict=False):
            series.append(
                CurveSeries(
                    series_label(
                        f"{name} {label} v{ev['policy_version']}",
                        ev.get("num_samples"),
                        ev.get("temperature"),
                    ),
                    ev["budgets"],
                    ev["accuracy"],
                    ev.get("accuracy_ci_low"),
                    ev.get("accuracy_ci_high"),
                )
            )
    return series


def require_plotting() -> None:
    """Drawing in the CLI needs matplotlib (the `api` extra); say so before asking the API anything."""
    if importlib.util.find_spec("matplotlib") is None:
        raise CliError("drawing the plot needs matplotlib: pip install 'anytime[api]' (or matplotlib)")


def overlay_png(curves: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    """The start-vs-end overlay of several runs as PNG bytes; `CliError` when none has an evaluation."""
    series = overlay_series(curves)
    if not series:
        raise CliError(f"nothing to draw: none of {', '.join(curves)} has an evaluation yet")
    return accuracy_vs_budget_png(series, title)
