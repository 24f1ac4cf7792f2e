"""`anytime runs samples`: a step's traces as the model wrote them, rendered for a terminal (rich).

Each trace is a panel: the prompt, then the thinking piece by piece, a rule at every cut (the tokens kept,
the budgets it serves and their thinking advantages), the inserted text, and a table of the answers forced
there (the extracted answer, the verdict coloured, the reward and the summary advantage). What follows the
last cut is shown dimmed: no answer was forced from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

VERDICT_STYLES = {"correct": "bold green", "incorrect": "red", "unparseable": "yellow"}


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.3f}"


def answers_table(answers: Sequence[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, pad_edge=False, expand=False)
    for name, justify in (
        ("budget", "right"),
        ("#", "right"),
        ("answer", "left"),
        ("extracted", "left"),
        ("verdict", "left"),
        ("reward", "right"),
        ("advantage", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for answer in answers:
        status = str(answer["status"])
        table.add_row(
            str(answer["budget"]),
            str(answer["summary_index"]),
            Text(" ".join(str(answer["text"]).split())),
            Text(str(answer["extracted"]) if answer["extracted"] is not None else "—"),
            Text(status, style=VERDICT_STYLES.get(status, "magenta")),
            f"{float(answer['reward']):g}",
            _signed(answer.get("advantage")),
        )
    return table


def cut_rule(cut: dict[str, Any]) -> Rule:
    budgets = ", ".join(str(b) for b in cut["budgets"])
    title = f"cut at {cut['cut']} tokens · budget {budgets}"
    advantages = cut.get("thinking_advantages")
    if advantages is not None:
        title += " · thinking advantage " + ", ".join(_signed(a) for a in advantages)
    return Rule(title, style="cyan")


def sample_panel(sample: dict[str, Any]) -> Panel:
    parts: list[RenderableType] = [
        Text("prompt", style="bold"),
        Text(str(sample["prompt"]), style="dim"),
        Text("thinking", style="bold"),
    ]
    for cut in sample["cuts"]:
        if cut["thinking"]:
            parts.append(Text(str(cut["thinking"])))
        parts.append(cut_rule(cut))
        parts.append(Text("inserted: " + repr(str(cut["inserted"]) + str(cut["delimiter"])), style="italic"))
        parts.append(answers_table(cut["answers"]))
    if sample["thinking_rest"]:
        parts.append(Rule("after the last cut (no answer forced)", style="dim"))
        parts.append(Text(str(sample["thinking_rest"]), style="dim"))
    title = (
        f"{sample['kind']} step {sample['step']} · policy v{sample['policy_version']} · "
        f"problem {sample['problem_id']} · trace {sample['trace_index']}"
    )
    subtitle = (
        f"gold {sample['gold']} · {sample['thinking_tokens']} thinking tokens, ended by "
        f"{sample['finish_reason']}"
    )
    return Panel(Group(*parts), title=title, subtitle=subtitle, title_align="left")


def render(samples: Iterable[dict[str, Any]]) -> list[Panel]:
    return [sample_panel(sample) for sample in samples]
