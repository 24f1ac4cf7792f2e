"""A run's plan: everything the run's jobs need, resolved once from its validated `RunConfig`.

The driver builds one `RunPlan` per run (`RunPlan.from_config`) and builds every job from it: the rollout
job carries `rollout` (the budgets, G, A, summary cap, sampling), the learn request carries `learner` (the
algorithm with its prior, the optimiser and PPO knobs, the evaluation grid for the training log), each
evaluation job carries `eval_budgets` and `eval_sampling`. This is the one place a run's budgets are derived
from `b_max` and `num_budgets`, and the one place algorithm defaults are filled in (S, A, prior, baseline,
loss normaliser, eval k); `GET /v1/runs/{id}` and MLflow params show it (`RunPlan.resolved`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from anytime.brpo.budgets import BudgetPrior, PriorKind
from anytime.brpo.config import BRPOConfig
from anytime.contracts.evaluation import EvalSampling
from anytime.contracts.learn import LearnerConfig
from anytime.contracts.rollout import RolloutConfig
from anytime.contracts.sampling import SamplingConfig

if TYPE_CHECKING:
    from anytime.run_config import RunConfig

# k when `eval_samples` is unset and the evaluation samples (temperature above 0); greedy is one trace.
DEFAULT_EVAL_SAMPLES = 4


class RunPlan(BaseModel):
    """The run's resolved settings. `prior` is `learner.brpo.budget_prior()`, kept so nothing re-derives it;
    `rollout.budgets` are its budgets."""

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
        """Resolve `config` (validated already: its validators call this)."""
        knobs = config.learner
        brpo = BRPOConfig(
            algorithm=config.algorithm,
            b_max=config.b_max,
            num_budgets=config.num_budgets,
            num_summaries=config.num_summaries,
            prior=config.prior,
            probs=config.probs,
            baseline=config.baseline,
            summary_mode=config.summary_mode,
            group_size=config.group_size,
            summary_max_tokens=config.summary_max_tokens,
            aggregation=config.aggregation,
            loss_normalizer=config.loss_normalizer,
            **(knobs.brpo_fields() if knobs else {}),
        )
        prior = brpo.budget_prior()
        # The uniform evaluation grid `b_max * j / S_eval`, j = 1..S_eval.
        eval_budgets = tuple(
            config.b_max * j // config.eval_num_budgets for j in range(1, config.eval_num_budgets + 1)
        )
        rollout = RolloutConfig(
            budgets=prior.budgets,
            group_size=brpo.group_size,
            num_summaries=brpo.resolved_num_summaries,
            summary_max_tokens=brpo.summary_max_tokens,
            sampling=SamplingConfig(temperature=config.temperature),
        )
        learner_fields = knobs.learner_fields() if knobs else {}
        # A pipelined run's learner takes trajectories up to k versions old (and corrects them).
        lag = max(learner_fields.pop("max_policy_lag", 0), config.max_staleness)
        learner = LearnerConfig(
            brpo=brpo,
            lr=config.lr,
            temperature=config.temperature,
            seed=config.seed,
            eval_budgets=eval_budgets,
            max_policy_lag=lag,
            **learner_fields,
        )
        if config.eval_samples is not None:
            eval_k = config.eval_samples
        else:
            eval_k = 1 if config.eval_temperature == 0 else DEFAULT_EVAL_SAMPLES
        eval_sampling = EvalSampling(
            num_samples=eval_k, temperature=config.eval_temperature, seed=config.eval_seed
        )
        return cls(
            prior=prior,
            prior_name=_prior_name(config, prior),
            rollout=rollout,
            learner=learner,
            eval_budgets=eval_budgets,
            eval_sampling=eval_sampling,
            max_staleness=config.max_staleness,
            rollout_shards=config.rollout_shards,
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
            mode="json", exclude={"brpo", "eval_budgets", "lr", "temperature", "seed"}, exclude_none=True
        )
        return {
            "num_budgets": brpo.resolved_num_budgets,
            "num_summaries": brpo.resolved_num_summaries,
            "baseline": brpo.resolved_baseline.value,
            "summary_mode": brpo.resolved_summary_mode.value,
            "prior": self.prior_name,
            "budgets": list(self.prior.budgets),
            "probs": list(self.prior.probs),
            "loss_normalizer": brpo.resolved_loss_normalizer,
            "eval_budgets": list(self.eval_budgets),
            "eval_samples": self.eval_sampling.num_samples,
            "learner": {
                **learner,
                "clip_low": brpo.clip_low,
                "clip_high": brpo.clip_high,
                "discount": brpo.discount,
            },
        }


def _prior_name(config: RunConfig, prior: BudgetPrior) -> str:
    """The prior's name: the one set, `explicit` for given probabilities, or when left to the algorithm the
    named prior with these probabilities (on one budget every named prior is all mass on b_max: `base`)."""
    if config.prior is not None:
        return config.prior.value
    if config.probs is None:
        for kind in (PriorKind.BASE, PriorKind.UNIFORM, PriorKind.LINEAR):
            if BudgetPrior.spaced(kind, prior.b_max, prior.num_budgets).probs == prior.probs:
                return kind.value
    return "explicit"
