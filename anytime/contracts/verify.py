"""The `verify` queue's task: grade every summary of a step's trajectories (`services.verifier.worker`).

The result carries the step's rewards per (trace, budget, summary) (`BudgetReward`, built by
`budget_rewards`), which is what the driver writes to SQL: it never re-reads Redis for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.cuts import cut_of_budget, split_by_budget
from anytime.queues import Queue, task_name
from anytime.trajectory import Trajectory, cuts_of
from anytime.verdict import Status, VerdictRecord

GRADE_TASK = task_name(Queue.VERIFY, "grade")


class VerifyRequest(BaseModel):
    """The task's keyword arguments: which trajectories, and the model facts the format rule needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trajectory_ids: list[str] = Field(default_factory=list)
    run_id: str | None = None
    step: int | None = Field(default=None, ge=0)
    think_end_id: int = Field(description="The tokenizer's `</think>` id (ModelFacts.think_end_id).")
    eos_id: int = Field(description="The tokenizer's EOS id (ModelFacts.eos_id).")

    @model_validator(mode="after")
    def _one_selection(self) -> VerifyRequest:
        by_step = self.run_id is not None or self.step is not None
        if bool(self.trajectory_ids) == by_step or (by_step and (self.run_id is None or self.step is None)):
            raise ValueError("give either trajectory_ids or both run_id and step (not both, not neither)")
        return self


class BudgetReward(BaseModel):
    """What one summary earned at one budget: the one record of a reward. The driver stores it as it is
    (`repository.record_rewards`, with its run and step); the API serves it (`RewardOut`, with its step)."""

    model_config = ConfigDict(frozen=True)

    problem_id: str
    trace_index: int
    budget_index: int
    summary_index: int = Field(description="a: the summary's index among its budget's A.")
    cut: int = Field(description="Thinking tokens kept for this budget.")
    inserted_start: int = Field(description="Start of the inserted tokens in the summary prompt's ids.")
    inserted_end: int = Field(description="End (exclusive) of the inserted tokens.")
    answer: str | None = Field(description="The extracted answer (none found: null).")
    status: Status = Field(description="Verdict: correct, incorrect, unparseable, timeout or error.")
    reward: float


class VerifyResult(BaseModel):
    trajectories: int
    summaries: int
    already_verified: int
    graded: int
    stored: int = Field(description="New verdicts written (fewer than graded when another task raced us).")
    statuses: dict[str, int]
    rewarded: int
    cache_hit_rate: float
    rewards: list[BudgetReward] = Field(
        default_factory=list, description="Every summary's reward per budget, in trajectory order."
    )

    @classmethod
    def merged(cls, results: Sequence[VerifyResult]) -> VerifyResult:
        """One step's result from its shards' (a sharded step is graded shard by shard): counts add up,
        rewards keep the shards' order, the cache hit rate is weighted by what each shard graded."""
        if not results:
            raise ValueError("no verify results to merge")
        statuses: dict[str, int] = {}
        for result in results:
            for status, count in result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        graded = sum(r.graded for r in results)
        hit_rate = sum(r.cache_hit_rate * r.graded for r in results) / graded if graded else 0.0
        return cls(
            trajectories=sum(r.trajectories for r in results),
            summaries=sum(r.summaries for r in results),
            already_verified=sum(r.already_verified for r in results),
            graded=graded,
            stored=sum(r.stored for r in results),
            statuses=statuses,
            rewarded=sum(r.rewarded for r in results),
            cache_hit_rate=round(hit_rate, 4),
            rewards=[reward for r in results for reward in r.rewards],
        )

    def metrics(self) -> dict[str, float]:
        """MLflow metrics of the verify task (slash-namespaced)."""
        return {"verify/cache_hit_rate": self.cache_hit_rate, "verify/graded": float(self.graded)}


def budget_rewards(trajectory: Trajectory, verdicts: Mapping[str, VerdictRecord]) -> list[BudgetReward]:
    """One record per (budget, summary) of a trace, budgets in order: per-cut verdicts split A per budget
    (`split_by_budget`; a collapsed cut's k·A summaries serve k budgets, A each).

    Raises `LookupError` naming a summary without a verdict (the verify task did not finish)."""
    per_cut = [
        [trajectory.summary_id(c, s) for s in range(len(cut.summaries))]
        for c, cut in enumerate(trajectory.cuts)
    ]
    cuts = cuts_of(trajectory)
    by_budget = split_by_budget(cuts, per_cut, trajectory.num_summaries)
    records: list[BudgetReward] = []
    for j, (cut, sids) in enumerate(zip(cut_of_budget(cuts), by_budget, strict=True)):
        inserted_start = len(trajectory.prompt_ids) + cut.cut
        for a, sid in enumerate(sids):
            verdict = verdicts.get(sid)
            if verdict is None:
                raise LookupError(f"summary {sid} has no verdict: the verify task did not finish")
            records.append(
                BudgetReward(
                    problem_id=trajectory.problem_id,
                    trace_index=trajectory.trace_index,
                    budget_index=j,
                    summary_index=a,
                    cut=cut.cut,
                    inserted_start=inserted_start,
                    inserted_end=inserted_start + len(cut.inserted_ids),
                    answer=verdict.extracted,
                    status=verdict.status,
                    reward=verdict.reward,
                )
            )
    return records
