"""Pairing: which arm configs of an experiment may be compared, and the config of each arm × seed.

Every arm of a seed gets the same `seed` and `eval_seed` (the driver samples a step's problems from the
seed and the step, and the evaluation's samples from `eval_seed`), and the fields that decide which
problems a run trains and is evaluated on must be the same in every arm (`PAIRED_FIELDS`), so within a seed
the arms see the same problems in the same order and are evaluated on the same problems, grid,
temperature, k and seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anytime.brpo.budgets import spaced_budgets
from anytime.run_config import RunConfig, merge_bodies

# Fields that decide which problems a run trains on (the driver samples `problems_per_step` of `dataset`
# from the seed and the step) and how it is evaluated: the same in every arm, or the arms are not paired.
PAIRED_FIELDS = (
    "dataset",
    "dataset_columns",
    "problems_per_step",
    "eval_dataset",
    "eval_dataset_columns",
    "eval_problems",
    "eval_num_budgets",
    "eval_samples",
    "eval_temperature",
)


@dataclass(frozen=True)
class PairingProblem:
    """Why arms are not paired: where in the experiment's spec (`("base", field)` or `("arms", arm,
    field)`) and what to do, in words for a 422."""

    loc: tuple[str, ...]
    message: str


def paired_config(
    experiment: str, base: Mapping[str, Any], arm: str, overrides: Mapping[str, Any], seed: int
) -> RunConfig:
    """Run `arm` × `seed` of an experiment: `base`, then the arm's `overrides`, named
    `{experiment}/{arm}/seed{seed}`, with the seed as both `seed` and `eval_seed`. Raises pydantic's
    `ValidationError` for a bad config."""
    merged = merge_bodies(base, {**overrides, "name": f"{experiment}/{arm}/seed{seed}", "seed": seed})
    merged["evaluation"] = {**merged["evaluation"], "seed": seed}
    return RunConfig.model_validate(merged)


def pairing_problems(configs: Mapping[str, RunConfig]) -> list[PairingProblem]:
    """Every way the arms' configs (arm → its config at one seed; the first arm is the one the others are
    checked against) fail to be paired; empty: they may be compared."""
    problems: list[PairingProblem] = []
    (first, reference), *others = configs.items()
    if reference.evaluation.dataset is None:
        problems.append(
            PairingProblem(
                ("base", "eval_dataset"),
                "an experiment compares its arms by their evaluations: set eval_dataset (held-out problems) "
                "in base",
            )
        )
    reference_flat = reference.flat()
    for arm, config in others:
        flat = config.flat()
        for name in PAIRED_FIELDS:
            mine, theirs = flat[name], reference_flat[name]
            if mine != theirs:
                problems.append(
                    PairingProblem(
                        ("arms", arm, name),
                        f"every arm must have the same {name} (pairing: within a seed the arms train and "
                        f"are evaluated on the same problems); arm {first} has {theirs!r}, arm {arm} "
                        f"{mine!r}: set it in base, not per arm",
                    )
                )
        grid, reference_grid = _eval_grid(config), _eval_grid(reference)
        if not problems and grid != reference_grid:
            problems.append(
                PairingProblem(
                    ("arms", arm, "b_max"),
                    f"every arm must be evaluated on the same budget grid (b_max / eval_num_budgets); arm "
                    f"{first} has {reference_grid}, arm {arm} {grid}",
                )
            )
    return problems


def _eval_grid(config: RunConfig) -> list[int]:
    """The evaluation budgets the run's plan will hold (`RunPlan.eval_budgets`)."""
    return list(spaced_budgets(config.method.b_max, config.evaluation.num_budgets))
