"""Pairing: the arms of one seed of an experiment receive the same problems in the same order at every step
(what the driver puts in each step's rollout job, from the stored configs) and are evaluated on the same
held-out problems with the same grid, temperature, k and sampling seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anytime.problems import load_problems
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.tracking import NullTracker
from services.control.driver import DriverDeps, RunDriver
from tests.unit.api.test_api_experiments import BASE, Api, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses

ARMS = {"brpo": {}, "grpo": {"algorithm": "grpo"}, "brpo-v2-baseline": {"baseline": "v2"}}
STEPS = 8


def _stored_configs(api: Api, experiment: dict[str, Any]) -> dict[int, dict[str, RunConfig]]:
    """seed → arm → the config stored with the run (what the driver reads)."""
    by_seed: dict[int, dict[str, RunConfig]] = {}
    for run in experiment["runs"]:
        stored = api.client.get(f"/v1/runs/{run['run_id']}").json()["config"]
        by_seed.setdefault(run["seed"], {})[run["arm"]] = RunConfig.model_validate(stored)
    return by_seed


def _rollout(driver: RunDriver, config: RunConfig, step: int) -> tuple[list[str], int]:
    """The problem ids, in order, and the sampling seed of the step's rollout job."""
    train = load_problems(Path(config.dataset))
    jobs = driver._rollout_jobs("r", step, 0, config.model, train, config, RunPlan.from_config(config))
    return [p.id for job in jobs for p in job.problems], jobs[0].seed


def test_the_arms_of_a_seed_train_on_the_same_problems_in_the_same_order(api: Api, tmp_path: Path) -> None:
    experiment = api.create(arms=ARMS, seeds=[3, 7], base={**BASE, "steps": STEPS})
    by_seed = _stored_configs(api, experiment)
    driver = RunDriver(DriverDeps(api.sessions, lambda *_: {}, None, NullTracker(), tmp_path))  # type: ignore[arg-type]
    sampled: dict[int, list[tuple[list[str], int]]] = {}
    for seed, configs in by_seed.items():
        assert set(configs) == set(ARMS)
        for step in range(STEPS):
            per_arm = {arm: _rollout(driver, config, step) for arm, config in configs.items()}
            ids = {tuple(problems) for problems, _ in per_arm.values()}
            assert len(ids) == 1, (seed, step, per_arm)  # identical ids, identical order
            assert {rollout_seed for _, rollout_seed in per_arm.values()} == {per_arm["brpo"][1]}
            # The driver's own sampling function agrees with the job (what the rollout worker receives).
            for config in configs.values():
                train = load_problems(Path(config.dataset))
                direct = [p.id for p in RunDriver._problems_of_step(train, step, config)]
                assert direct == per_arm["brpo"][0]
        sampled[seed] = [_rollout(driver, configs["brpo"], step) for step in range(STEPS)]
    assert sampled[3] != sampled[7]  # seeds differ: pairing is within a seed, not one sample for all
    assert len({tuple(ids) for ids, _ in sampled[3]}) > 1  # and steps differ within a seed


def test_the_arms_of_a_seed_are_evaluated_alike(api: Api) -> None:
    experiment = api.create(
        arms=ARMS, seeds=[3, 7], base={**BASE, "eval_samples": 2, "eval_temperature": 0.6}
    )
    by_seed = _stored_configs(api, experiment)

    def evaluation(config: RunConfig) -> tuple[Any, ...]:
        held_out, plan = config.evaluation, RunPlan.from_config(config)
        assert held_out.dataset is not None
        problems = load_problems(Path(held_out.dataset))[: held_out.problems]  # as the driver cuts it
        return (
            held_out.dataset,
            [p.id for p in problems],
            list(plan.eval_budgets),
            held_out.temperature,
            plan.eval_sampling.num_samples,
            held_out.seed,
        )

    for seed, configs in by_seed.items():
        settings = {arm: evaluation(config) for arm, config in configs.items()}
        assert len(set(map(repr, settings.values()))) == 1, settings
        assert settings["grpo"][-1] == seed  # the sampling seed comes from the experiment's seed
        assert settings["grpo"][2] == [16, 32, 48, 64] and settings["grpo"][4] == 2
    grpo, brpo = RunPlan.from_config(configs["grpo"]), RunPlan.from_config(configs["brpo"])
    assert grpo.prior.budgets != brpo.prior.budgets  # the arms differ
