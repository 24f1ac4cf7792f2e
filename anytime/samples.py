"""What a run shows of its rollouts: a few traces of a step (or of an evaluation) in full, readable.

A *rollout sample* is one thinking trace as text: the prompt, the thinking split at its cuts, each cut's
inserted text (the forced think-end), every answer sampled from the cut with its extracted answer, verdict
and reward, and, for training steps, the advantages the learner gave (the thinking advantage of each budget
the cut serves, the summary advantage of each answer). The learner writes a step's samples (it has the
tokenizer and the advantages), the evaluation task an evaluation's; the driver stores them in SQL with the
step (`anytime.db`), logs them to MLflow, and the API serves them at `GET /v1/runs/{id}/samples`.

Torch-free, and free of the tokenizer: the writer passes its `decode`. Answers are listed per cut in
budget order, A per budget, exactly as the cut record holds its summaries (`CutRecord.summaries`:
`budget_indices[p]`'s A answers are `summaries[p·A : (p+1)·A]`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from anytime.trajectory import Trajectory
from anytime.verdict import VerdictRecord

SampleKind = Literal["train", "eval"]
# A step's (or an evaluation's) samples when the run says nothing else: 2 problems, all their traces.
DEFAULT_SAMPLE_PROBLEMS = 2

Decode = Callable[[Sequence[int]], str]
# The table's `thinking` cell: the thought up to the answer's cut, its last this many characters (what the
# answer was forced after). A row per answer repeats the thought, so whole 8k-token thoughts would make a
# step's table megabytes; the full text stays in SQL (`GET /v1/runs/{id}/samples`).
TABLE_THOUGHT_CHARS = 1000


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleAnswer(_Record):
    """One answer forced at one budget: what was generated, what the verifier found, what it earned."""

    budget_index: int = Field(ge=0)
    budget: int = Field(ge=1, description="The thinking budget this answer stands for.")
    summary_index: int = Field(ge=0, description="Which of the budget's A answers.")
    text: str = Field(description="The generated answer (after the inserted text and delimiter).")
    extracted: str | None = Field(description="The answer the verifier found in it, if any.")
    status: str = Field(description="The verdict: correct, incorrect, unparseable, timeout, error.")
    reward: float
    advantage: float | None = Field(description="The summary advantage it was trained with (training only).")


class SampleCut(_Record):
    """One distinct cut of the thought and the answers forced there."""

    cut: int = Field(ge=0, description="Thinking tokens kept.")
    budgets: list[int] = Field(description="The budgets this cut serves (several when the thought ended).")
    thinking: str = Field(description="The thinking since the previous cut, up to this one, decoded.")
    inserted: str = Field(description="The text inserted after the cut to force an answer.")
    delimiter: str
    thinking_advantages: list[float] | None = Field(
        description="The thinking advantage of each budget it serves, in order (training only)."
    )
    answers: list[SampleAnswer]


class RolloutSample(_Record):
    """One trace of one problem, as the model saw and wrote it."""

    kind: SampleKind
    step: int = Field(
        ge=-1, description="Training: the step. Evaluation: the last step before it (-1: none)."
    )
    policy_version: int = Field(ge=0)
    problem_id: str
    trace_index: int = Field(ge=0)
    prompt: str = Field(description="The prompt as the model saw it (its chat template included).")
    gold: str = Field(description="The ground truth.")
    thinking_tokens: int = Field(ge=0)
    finish_reason: str = Field(description="How the thought ended: think_end, eos or length.")
    cuts: list[SampleCut]
    thinking_rest: str = Field(description="The thinking after the last cut (no answer was forced from it).")

    @property
    def answers(self) -> list[SampleAnswer]:
        return [answer for cut in self.cuts for answer in cut.answers]


def rollout_sample(
    trajectory: Trajectory,
    verdicts: Mapping[str, VerdictRecord],
    decode: Decode,
    *,
    kind: SampleKind,
    step: int | None = None,
    thinking_advantages: Sequence[float] | None = None,
    summary_advantages: Sequence[Sequence[float]] | None = None,
) -> RolloutSample:
    """The sample of one trajectory; `verdicts` by summary id (every summary needs one).

    `thinking_advantages[j]` and `summary_advantages[j][a]` are budget j's (training: both or neither).
    `step` defaults to the trajectory's (an evaluation passes the run's)."""
    if (thinking_advantages is None) != (summary_advantages is None):
        raise ValueError("give both the thinking and the summary advantages, or neither")
    a_per_budget = trajectory.num_summaries
    cuts: list[SampleCut] = []
    previous = 0
    for c, record in enumerate(trajectory.cuts):
        answers: list[SampleAnswer] = []
        for s, summary in enumerate(record.summaries):
            position, a = divmod(s, a_per_budget)
            j = record.budget_indices[position]
            verdict = verdicts.get(trajectory.summary_id(c, s))
            if verdict is None:
                raise ValueError(f"summary {trajectory.summary_id(c, s)} has no verdict; grade it first")
            answers.append(
                SampleAnswer(
                    budget_index=j,
                    budget=trajectory.budgets[j],
                    summary_index=a,
                    text=summary.text,
                    extracted=verdict.extracted,
                    status=verdict.status.value,
                    reward=verdict.reward,
                    advantage=None if summary_advantages is None else float(summary_advantages[j][a]),
                )
            )
        start = min(previous, record.cut)
        cuts.append(
            SampleCut(
                cut=record.cut,
                budgets=list(record.budgets),
                thinking=decode(trajectory.thinking_ids[start : record.cut]),
                inserted=decode(record.inserted_ids),
                delimiter=decode(record.delimiter_ids),
                thinking_advantages=None
                if thinking_advantages is None
                else [float(thinking_advantages[j]) for j in record.budget_indices],
                answers=answers,
            )
        )
        previous = max(previous, record.cut)
    return RolloutSample(
        kind=kind,
        step=trajectory.step if step is None else step,
        policy_version=trajectory.policy_version,
        problem_id=trajectory.problem_id,
        trace_index=trajectory.trace_index,
        prompt=decode(trajectory.prompt_ids),
        gold=_gold_text(trajectory.answer),
        thinking_tokens=len(trajectory.thinking_ids),
        finish_reason=trajectory.finish_reason,
        cuts=cuts,
        thinking_rest=decode(trajectory.thinking_ids[previous:]),
    )


def _gold_text(answer: Any) -> str:
    if isinstance(answer, list):
        return ", ".join(str(a) for a in answer)
    return str(answer)


def sample_problem_ids(problem_ids: Sequence[str], count: int) -> list[str]:
    """The problems a step shows: the first `count` distinct ids in the step's own (seeded) order."""
    chosen: list[str] = []
    for problem_id in problem_ids:
        if len(chosen) == count:
            break
        if problem_id not in chosen:
            chosen.append(problem_id)
    return chosen


def table_rows(
    samples: Sequence[RolloutSample], thought_chars: int = TABLE_THOUGHT_CHARS
) -> dict[str, list[Any]]:
    """One row per answer (MLflow's `log_table` columns): where it came from, the end of the thinking up to
    its cut (its last `thought_chars` characters, "…" first when shortened), the inserted text, the answer,
    its verdict and advantages; the UI shows them as a table."""
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "step",
            "policy_version",
            "problem",
            "trace",
            "budget",
            "cut",
            "thinking",
            "inserted",
            "answer",
            "extracted",
            "gold",
            "verdict",
            "reward",
            "thinking_advantage",
            "summary_advantage",
        )
    }
    for sample in samples:
        thought = ""
        for cut in sample.cuts:
            thought += cut.thinking
            for answer in cut.answers:
                position = cut.budgets.index(answer.budget)
                row = {
                    "step": sample.step,
                    "policy_version": sample.policy_version,
                    "problem": sample.problem_id,
                    "trace": sample.trace_index,
                    "budget": answer.budget,
                    "cut": cut.cut,
                    "thinking": thought if len(thought) <= thought_chars else "…" + thought[-thought_chars:],
                    "inserted": cut.inserted,
                    "answer": answer.text,
                    "extracted": answer.extracted,
                    "gold": sample.gold,
                    "verdict": answer.status,
                    "reward": answer.reward,
                    "thinking_advantage": None
                    if cut.thinking_advantages is None
                    else cut.thinking_advantages[position],
                    "summary_advantage": answer.advantage,
                }
                for name, value in row.items():
                    columns[name].append(value)
    return columns
