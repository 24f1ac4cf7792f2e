"""A step's samples as the learner saw them: a few problems' traces with the advantages they were given.

The advantages are the learner's own (`batch.group_advantages`, the function `build_step_batch` computes
every group's with), recomputed for the chosen groups only; the text is the learner's tokenizer's. The
driver chooses the problems (`LearnRequest.sample_problems`), so a re-delivered step shows the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anytime.contracts.learn import LearnerConfig
from anytime.samples import RolloutSample, rollout_sample
from anytime.trajectory import Trajectory
from services.learner.batch import Verdicts, group_advantages, group_by_problem


def step_samples(
    trajectories: Sequence[Trajectory],
    verdicts: Verdicts,
    problem_ids: Sequence[str],
    config: LearnerConfig,
    tokenizer: Any,
) -> list[RolloutSample]:
    """Every trace of each problem in `problem_ids` (in that order; an id the step lacks is skipped), with
    its thinking and summary advantages."""
    groups = {group[0].problem_id: group for group in group_by_problem(trajectories)}

    def decode(ids: Sequence[int]) -> str:
        return str(tokenizer.decode(list(ids), skip_special_tokens=False))

    samples: list[RolloutSample] = []
    for problem_id in problem_ids:
        group = groups.get(problem_id)
        if group is None:
            continue
        advantages = group_advantages(group, verdicts, config.brpo, config.prior)
        for g, trajectory in enumerate(group):
            samples.append(
                rollout_sample(
                    trajectory,
                    verdicts.get(trajectory.id, {}),
                    decode,
                    kind="train",
                    thinking_advantages=advantages.thinking_adv[g].tolist(),
                    summary_advantages=advantages.summary_adv[g].tolist(),
                )
            )
    return samples
