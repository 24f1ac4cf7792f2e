"""The GPU recipe for the paper's main arms: every arm is a valid run config with the paper's settings."""

from __future__ import annotations

from pathlib import Path

import yaml

from anytime.run_config import RunConfig

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "paper-1.5b.yaml"


def test_the_paper_recipe_validates_with_the_papers_settings() -> None:
    spec = yaml.safe_load(RECIPE.read_text())
    assert spec["reference"] in spec["arms"] and set(spec["arms"]) == {"grpo", "ar-uniform", "ar-linear"}
    configs = {arm: RunConfig.model_validate({**spec["base"], **over}) for arm, over in spec["arms"].items()}
    for arm, config in configs.items():
        brpo = config.plan().brpo
        assert config.plan().eval_budgets == (2000, 4000, 6000, 8000), arm
        assert (config.group_size, config.problems_per_step, config.lr) == (8, 64, 1e-6), arm
        assert (config.eval_temperature, config.eval_samples) == (0.6, 32), arm
        assert brpo.resolved_loss_normalizer == configs["grpo"].plan().brpo.resolved_loss_normalizer
        if arm == "grpo":
            assert (brpo.resolved_num_budgets, brpo.resolved_num_summaries) == (1, 1)
        else:
            assert brpo.budget_prior().budgets == (2000, 4000, 6000, 8000)
            assert brpo.resolved_num_summaries == 4 and config.summary_max_tokens == 128
    linear = configs["ar-linear"].plan().prior.probs
    assert list(linear) == sorted(linear) and configs["ar-uniform"].plan().prior.probs == (0.25,) * 4
