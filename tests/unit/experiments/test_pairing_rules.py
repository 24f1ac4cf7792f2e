"""`anytime.experiments.pairing` on hand-made arm configs: what may be compared, and each run's config."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from anytime.experiments.pairing import paired_config, pairing_problems

BASE: dict[str, Any] = {
    "model": "models/tiny",
    "dataset": "data/train.jsonl",
    "eval_dataset": "data/eval.jsonl",
    "b_max": 64,
    "problems_per_step": 4,
    "eval_problems": 4,
}


def test_a_run_of_an_arm_takes_the_seed_as_both_seeds_and_is_named_by_arm_and_seed() -> None:
    config = paired_config("exp", BASE, "grpo", {"algorithm": "grpo"}, 7)
    assert (config.name, config.seed, config.evaluation.seed) == ("exp/grpo/seed7", 7, 7)
    assert config.method.algorithm == "grpo" and config.method.b_max == 64  # the arm over the base
    # Bodies written in sections merge field by field, not section by section.
    nested = paired_config("exp", {**BASE, "method": {"group_size": 2}}, "a", {"method": {"b_max": 32}}, 1)
    assert (nested.method.group_size, nested.method.b_max) == (2, 32)
    with pytest.raises(ValidationError):
        paired_config("exp", BASE, "bad", {"problems_per_step": 0}, 7)


def test_arms_that_differ_only_in_the_method_are_paired() -> None:
    configs = {
        arm: paired_config("e", BASE, arm, o, 1) for arm, o in {"a": {}, "b": {"algorithm": "grpo"}}.items()
    }
    assert pairing_problems(configs) == []


def test_a_paired_field_set_per_arm_is_named_with_the_arm() -> None:
    configs = {
        arm: paired_config("e", BASE, arm, o, 1) for arm, o in {"a": {}, "b": {"eval_problems": 2}}.items()
    }
    (problem,) = pairing_problems(configs)
    assert problem.loc == ("arms", "b", "eval_problems") and "set it in base" in problem.message


def test_another_grid_or_no_held_out_set_is_not_paired() -> None:
    configs = {arm: paired_config("e", BASE, arm, o, 1) for arm, o in {"a": {}, "b": {"b_max": 128}}.items()}
    assert [p.loc for p in pairing_problems(configs)] == [("arms", "b", "b_max")]
    alone = {"a": paired_config("e", {**BASE, "eval_dataset": None}, "a", {}, 1)}
    assert [p.loc for p in pairing_problems(alone)] == [("base", "eval_dataset")]
