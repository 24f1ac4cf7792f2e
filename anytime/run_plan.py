"""A run's plan: everything the run's jobs need, resolved once from its validated `RunConfig`.

The API builds the plan when it creates the run (`RunPlan.from_config`) and stores it on the run's row; the
driver reads the stored plan and builds every job from it: the rollout job carries `rollout` (the budgets,
G, A, summary cap, sampling), the learn request carries `learner` (the algorithm with its resolved prior,
the optimiser and PPO knobs, the evaluation grid for the training log), each evaluation job carries
`eval_budgets` and `eval_sampling`. This is the one place a run's budgets are derived from `b_max` and
`num_budgets`, and the one place algorithm defaults are filled in (S, A, prior, baseline, loss normaliser,
eval k); `GET /v1/runs/{id}` shows the stored plan and MLflow params its `resolved()` view.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from anytime.brpo.budgets import BudgetPrior, PriorKind, spaced_budgets
from anytime.brpo.config import BRPOConfig
from anytime.contracts.evaluation import EvalSampling
from anytime.contracts.learn import LearnerConfig
from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig
from anytime.run_config import RunConfig


class RunPlan(BaseModel):
    """The run's resolved settings. `prior` is the algorithm's prior, resolved once: `rollout.budgets` are
    its budgets and `learner.prior` is it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prior: BudgetPrior
    prior_name: str
    rollout: RolloutConfig
    learner: LearnerConfig
    eval_budgets: tuple[int, ...]
    eval_sampling: EvalSampling
    max_staleness: int = 0
    rollout_shards: int | None = None

    @classmethod
    def from_config(cls, config: RunConfig) -> RunPlan:
        """Resolve a validated `config`."""
        brpo = config.method
        prior = brpo.budget_prior()
        evaluation = config.evaluation
        eval_budgets = spaced_budgets(brpo.b_max, evaluation.num_budgets)
        sampling = SamplingConfig(temperature=config.rollout.temperature)
        rollout = RolloutConfig(
            budgets=prior.budgets,
            group_size=brpo.group_size,
            num_summaries=brpo.resolved_num_summaries,
            summary_max_tokens=brpo.summary_max_tokens,
            sampling=sampling,
        )
        learner = LearnerConfig(
            **config.learner.model_dump(),
            brpo=brpo,
            prior=prior,
            loss_normalizer=brpo.resolved_loss_normalizer,
            temperature=config.rollout.temperature,
            max_staleness=config.rollout.max_staleness,
            eval_budgets=eval_budgets,
            seed=config.seed,
        )
        eval_sampling = EvalSampling(
            num_samples=evaluation.resolved_samples, temperature=evaluation.temperature, seed=evaluation.seed
        )
        return cls(
            prior=prior,
            prior_name=_prior_name(brpo, prior),
            rollout=rollout,
            learner=learner,
            eval_budgets=eval_budgets,
            eval_sampling=eval_sampling,
            max_staleness=config.rollout.max_staleness,
            rollout_shards=config.rollout.shards,
        )

    @property
    def brpo(self) -> BRPOConfig:
        return self.learner.brpo

    @property
    def sampling(self) -> SamplingConfig:
        """How the rollout samples thinking and summaries."""
        return self.rollout.sampling

    @property
    def summary_max_tokens(self) -> int:
        return self.rollout.summary_max_tokens

    def resolved(self) -> dict[str, Any]:
        """What the algorithm and the plan filled in, as JSON: S, A, baseline, summary mode, the prior's
        budgets and probabilities, the loss normaliser, the evaluation grid and k, and the learner's
        optimiser and PPO knobs (clips, mini-batches, weight decay, …)."""
        brpo = self.brpo
        # The learner's knobs; what the run's flat fields set already (lr, temperature, seed) is not repeated,
        # and knobs left to the device (gradient checkpointing) or off (keep_every) are left out.
        learner = self.learner.model_dump(
            mode="json",
            exclude={
                "brpo",
                "prior",
                "loss_normalizer",
                "eval_budgets",
                "lr",
                "temperature",
                "seed",
                "max_staleness",
            },
            exclude_none=True,
        )
        return {
            "num_budgets": brpo.resolved_num_budgets,
            "num_summaries": brpo.resolved_num_summaries,
            "baseline": brpo.resolved_baseline.value,
            "summary_mode": brpo.resolved_summary_mode.value,
            "prior": self.prior_name,
            "budgets": list(self.prior.budgets),
            "probs": list(self.prior.probs),
            "loss_normalizer": self.learner.loss_normalizer,
            "eval_budgets": list(self.eval_budgets),
            "eval_samples": self.eval_sampling.num_samples,
            "learner": {**learner, **{knob: getattr(brpo, knob) for knob in _LEARNER_LOGGED}},
        }


# The algorithm's PPO knobs, shown among the learner's in `RunPlan.resolved`.
_LEARNER_LOGGED = ("clip_low", "clip_high", "discount")


def resolved_params(config: RunConfig, plan: RunPlan) -> dict[str, object]:
    """The config as it runs, for MLflow params: the config's flat fields (`RunConfig.flat`), with every field
    left unset (None) for the algorithm to fill in carrying the value the run uses (S, A, baseline, summary
    mode, prior, loss normalizer, eval k), the training and evaluation budgets and the learner's knobs
    (`RunPlan.resolved`); fields that stay unset (no name, no eval set) are left out. `prior` names the prior
    (`explicit` for given probabilities; on one budget every named prior is all mass on b_max, written
    `base`); `probs` are its probabilities. What the user wrote is the run's `config.json` artifact."""
    flat = config.flat()
    for knob in _LEARNER_LOGGED:  # logged once, with the learner's knobs (`learner.clip_high`, …)
        flat.pop(knob)
    resolved: dict[str, object] = {**flat, **plan.resolved()}
    return {name: value for name, value in resolved.items() if value is not None}


def _prior_name(brpo: BRPOConfig, prior: BudgetPrior) -> str:
    """The prior's name: the one set, `explicit` for given probabilities, or when left to the algorithm the
    named prior with these probabilities (on one budget every named prior is all mass on b_max: `base`)."""
    if brpo.prior is not None:
        return brpo.prior.value
    if brpo.probs is None:
        for kind in (PriorKind.BASE, PriorKind.UNIFORM, PriorKind.LINEAR):
            if BudgetPrior.spaced(kind, prior.b_max, prior.num_budgets).probs == prior.probs:
                return kind.value
    return "explicit"
