"""One step's verified trajectories → rewards, advantages and packed trees (docs/method.md §2.4–2.10).

Checks come first and refuse the step with a message that says what to do: every summary needs a
verdict (a missing one is a missing input, never a 0), every trajectory must match the run's budgets and
A, and no trajectory may appear twice (nothing is counted twice). The arithmetic is the core library's:
`split_by_budget` for collapsed cuts, `brpo_advantages` per problem group (with each trace's distinct cuts,
so collapsed budgets share a summary baseline), `pack_tree` per trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from anytime.brpo.advantages import brpo_advantages
from anytime.brpo.budgets import BudgetPrior
from anytime.brpo.config import BRPOConfig
from anytime.brpo.cuts import cut_of_budget, split_by_budget
from anytime.brpo.packing import PackedTree, pack_tree
from anytime.contracts.verify import budget_rewards
from anytime.trajectory import Trajectory, cuts_of
from anytime.verdict import VerdictRecord

# trajectory id → summary id → verdict record (`TrajectoryStore.verdicts`)
Verdicts = Mapping[str, Mapping[str, VerdictRecord]]


class MissingVerdictsError(ValueError):
    """Some summaries have no verdict: the verifier has not finished this step."""


class BatchMismatchError(ValueError):
    """The trajectories do not fit the run (budgets, A, policy version, duplicates)."""


@dataclass(frozen=True)
class ProblemGroup:
    """The G traces of one problem, by trace index, with their rewards and advantages.

    rewards: [G, S, A]; thinking_adv: [G, S]; summary_adv: [G, S, A] (all float32).
    """

    problem_id: str
    trajectories: tuple[Trajectory, ...]
    rewards: Tensor
    thinking_adv: Tensor
    summary_adv: Tensor


@dataclass(frozen=True)
class StepBatch:
    """The step's groups and one packed tree per trajectory, trees in group order then trace order."""

    groups: tuple[ProblemGroup, ...]
    trees: tuple[PackedTree, ...]
    trajectories: tuple[Trajectory, ...]
    statuses: Mapping[str, int]
    prior: BudgetPrior

    @property
    def rewards(self) -> Tensor:
        """[sum of G, S, A] every trace's rewards, in tree order."""
        return torch.cat([g.rewards for g in self.groups])


def trajectory_rewards(trajectory: Trajectory, verdicts: Mapping[str, VerdictRecord]) -> list[list[float]]:
    """[S][A] rewards of one trace: the reward rows the verify task reports (`budget_rewards`: per-cut
    verdicts split A per budget, collapsed cuts carry k·A), as a table.

    Raises `MissingVerdictsError` naming the summaries without a verdict.
    """
    missing = [
        trajectory.summary_id(c, s)
        for c, cut in enumerate(trajectory.cuts)
        for s in range(len(cut.summaries))
        if trajectory.summary_id(c, s) not in verdicts
    ]
    if missing:
        raise MissingVerdictsError(_missing_message(missing, trajectory.step))
    rewards = [[0.0] * trajectory.num_summaries for _ in trajectory.budgets]
    for row in budget_rewards(trajectory, verdicts):
        rewards[row.budget_index][row.summary_index] = row.reward
    return rewards


def _missing_message(missing: Sequence[str], step: int) -> str:
    shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
    return (
        f"{len(missing)} summaries have no verdict ({shown}); the learner refuses a step with missing "
        f"rewards: run the verifier on step {step} (anytime.verify.grade) and send the step again"
    )


def check_trajectories(trajectories: Sequence[Trajectory], config: BRPOConfig, prior: BudgetPrior) -> None:
    """Refuse a batch that is empty, mixes runs or steps, repeats a trajectory or has the wrong shape."""
    if not trajectories:
        raise BatchMismatchError("no trajectories: the rollout has not stored this step (or it expired)")
    ids = [t.id for t in trajectories]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise BatchMismatchError(f"trajectories appear twice: {duplicated[:3]}; pass each trajectory once")
    runs = {(t.run_id, t.step) for t in trajectories}
    if len(runs) != 1:
        raise BatchMismatchError(f"one step of one run at a time; got (run, step) pairs {sorted(runs)[:3]}")
    budgets = list(prior.budgets)
    num_summaries = config.resolved_num_summaries
    for t in trajectories:
        if t.budgets != budgets or t.num_summaries != num_summaries:
            raise BatchMismatchError(
                f"trajectory {t.id} has budgets {t.budgets} and A={t.num_summaries}, but the run's config "
                f"has budgets {budgets} and A={num_summaries}; roll out with the run's plan "
                "(its rollout budgets and num_summaries)"
            )


def group_by_problem(trajectories: Sequence[Trajectory]) -> list[list[Trajectory]]:
    """Problem groups in order of problem id, each by trace index."""
    groups: dict[str, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(t.problem_id, []).append(t)
    return [sorted(groups[p], key=lambda t: t.trace_index) for p in sorted(groups)]


def prefix_groups_of(trajectory: Trajectory) -> list[int]:
    """[S] the index of the distinct cut each budget was summarised from."""
    cuts = cuts_of(trajectory)
    return [cuts.index(cut) for cut in cut_of_budget(cuts)]


def group_advantages(
    group: Sequence[Trajectory], verdicts: Verdicts, config: BRPOConfig, prior: BudgetPrior
) -> ProblemGroup:
    """Rewards and both advantages of one problem's traces, from the core library; each trace's distinct
    cuts go along, so collapsed budgets share one summary baseline (the config's summary mode decides)."""
    rewards = torch.tensor(
        [trajectory_rewards(t, verdicts.get(t.id, {})) for t in group], dtype=torch.float32
    )
    prefix = torch.tensor([prefix_groups_of(t) for t in group], dtype=torch.long)
    thinking, summary = brpo_advantages(rewards[None], config, prefix[None], prior)
    return ProblemGroup(group[0].problem_id, tuple(group), rewards, thinking[0], summary[0])


def summaries_by_budget(trajectory: Trajectory) -> list[list[list[int]]]:
    """`[S][A]` generated ids of every summary, split per budget."""
    per_cut = [[sample.ids for sample in record.summaries] for record in trajectory.cuts]
    return split_by_budget(cuts_of(trajectory), per_cut, trajectory.num_summaries)


def pack_trajectory(trajectory: Trajectory, thinking_adv: Tensor, summary_adv: Tensor) -> PackedTree:
    """The trace and all its summaries as one packed tree with per-token advantages."""
    return pack_tree(
        trajectory.prompt_ids,
        trajectory.thinking_ids,
        cuts_of(trajectory),
        summaries_by_budget(trajectory),
        thinking_adv,
        summary_adv,
    )


def rollout_logprobs(trajectory: Trajectory, tree: PackedTree) -> Tensor:
    """[T] the engine's log-prob of every token of `tree`, 0 where the engine sampled nothing (prompt,
    inserted ids): laid out exactly as `pack_tree` lays out blocks (by budget, then sample)."""
    values = [0.0] * len(trajectory.prompt_ids) + list(trajectory.thinking_logprobs)
    per_cut = [list(record.summaries) for record in trajectory.cuts]
    by_budget = split_by_budget(cuts_of(trajectory), per_cut, trajectory.num_summaries)
    for cut, samples in zip(cut_of_budget(cuts_of(trajectory)), by_budget, strict=True):
        for sample in samples:
            values += [0.0] * len(cut.block_prefix_ids) + list(sample.logprobs)
    if len(values) != tree.length:
        raise ValueError(f"rollout log-probs cover {len(values)} tokens but the tree has {tree.length}")
    return torch.tensor(values, dtype=torch.float32)


def verdict_statuses(trajectories: Sequence[Trajectory], verdicts: Verdicts) -> dict[str, int]:
    """How many summaries got each verifier status (every status counted, none folded away)."""
    counts: dict[str, int] = {}
    for t in trajectories:
        for verdict in verdicts.get(t.id, {}).values():
            status = verdict.status.value
            counts[status] = counts.get(status, 0) + 1
    return counts


def build_step_batch(
    trajectories: Sequence[Trajectory], verdicts: Verdicts, config: BRPOConfig, prior: BudgetPrior
) -> StepBatch:
    """Validate the step, compute every group's advantages and pack every trajectory.

    prior: the run's thinking prior, as its plan resolved it (`LearnerConfig.prior`); the batch keeps it."""
    check_trajectories(trajectories, config, prior)
    missing = [
        t.summary_id(c, s)
        for t in trajectories
        for c, cut in enumerate(t.cuts)
        for s in range(len(cut.summaries))
        if t.summary_id(c, s) not in verdicts.get(t.id, {})
    ]
    if missing:  # the whole step's count, not only the first trajectory's
        raise MissingVerdictsError(_missing_message(missing, trajectories[0].step))
    groups = [group_advantages(group, verdicts, config, prior) for group in group_by_problem(trajectories)]
    ordered = [t for g in groups for t in g.trajectories]
    trees = [
        pack_trajectory(t, g.thinking_adv[i], g.summary_adv[i])
        for g in groups
        for i, t in enumerate(g.trajectories)
    ]
    return StepBatch(tuple(groups), tuple(trees), tuple(ordered), verdict_statuses(ordered, verdicts), prior)
