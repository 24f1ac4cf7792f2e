"""The GPU recipe for the paper's main arms: every arm is a valid run config with the paper's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from anytime.problems import load_problems
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "paper-1.5b.yaml"
AUTHORS_SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."
SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
INPUTS = "/data/inputs/math/"  # where the recipe expects ../shared/data to be copied


def test_the_paper_recipe_validates_with_the_papers_settings() -> None:
    spec = yaml.safe_load(RECIPE.read_text())
    assert spec["reference"] in spec["arms"] and set(spec["arms"]) == {"grpo", "ar-uniform", "ar-linear"}
    configs = {arm: RunConfig.model_validate({**spec["base"], **over}) for arm, over in spec["arms"].items()}
    plans = {arm: RunPlan.from_config(config) for arm, config in configs.items()}
    for arm, config in configs.items():
        brpo = plans[arm].brpo
        assert plans[arm].eval_budgets == (2000, 4000, 6000, 8000), arm
        assert (config.method.group_size, config.problems_per_step, config.learner.lr) == (8, 64, 1e-6), arm
        assert (config.evaluation.temperature, config.evaluation.samples) == (0.6, 32), arm
        assert config.prompt_suffix == AUTHORS_SUFFIX, arm
        assert brpo.resolved_loss_normalizer == plans["grpo"].brpo.resolved_loss_normalizer == 10_048
        if arm == "grpo":
            assert (brpo.resolved_num_budgets, brpo.resolved_num_summaries) == (1, 1)
        else:
            assert brpo.budget_prior().budgets == (2000, 4000, 6000, 8000)
            assert brpo.resolved_num_summaries == 4 and config.method.summary_max_tokens == 128
    linear = plans["ar-linear"].prior.probs
    assert list(linear) == sorted(linear) and plans["ar-uniform"].prior.probs == (0.25,) * 4


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout")
def test_the_recipes_datasets_read_through_its_columns() -> None:
    """The files the recipe names, read from ../shared/data as the workers would read the copies: MATH train
    through the default columns (7,472 problems with an answer), all 83 AMC problems evaluated."""
    config = RunConfig.model_validate(yaml.safe_load(RECIPE.read_text())["base"])
    assert config.dataset.startswith(INPUTS) and config.evaluation.dataset is not None
    train = load_problems(SHARED_DATA / config.dataset.removeprefix(INPUTS), config.dataset_columns)
    held_out_path = SHARED_DATA / config.evaluation.dataset.removeprefix(INPUTS)
    held_out = load_problems(held_out_path, config.evaluation.dataset_columns)
    assert (len(train), len(held_out)) == (7_472, config.evaluation.problems) == (7_472, 83)
    assert config.problems_per_step <= len(train)
