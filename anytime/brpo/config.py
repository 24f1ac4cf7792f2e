"""The algorithm's knobs as one validated, torch-free config (DESIGN.md §2), with GRPO as a switch.

Estimators are named by enums; the tensor code looks them up in registries keyed by the same enums,
so a typo fails here, at validation, not deep inside a training step.

GRPO (the paper's baseline) is the same pipeline with S = 1, A = 1, the `base` prior, the `v2`
baseline and `grpo` summaries: `BRPOConfig(algorithm="grpo")`. Ablations (GRPO+linear, GRPO+decouple,
…) are the `brpo` algorithm with some of those fields set explicitly.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.budgets import BudgetPrior, PriorKind


class Algorithm(StrEnum):
    BRPO = "brpo"
    GRPO = "grpo"


class ThinkingBaseline(StrEnum):
    """Baseline subtracted from the thinking return `Q[g, j]` (DESIGN.md §2.3)."""

    BRPO = "brpo"  # (j * V1 + (S - j) * V2) / S
    V1 = "v1"  # the trace's own discounted earlier scores
    V2 = "v2"  # the group mean return at the same budget (GRPO with returns)
    NONE = "none"  # 0: the advantage is the return


class SummaryMode(StrEnum):
    """How summaries are credited (DESIGN.md §2.4)."""

    BRPO = "brpo"  # every summary: reward minus the mean of its A siblings
    GRPO = "grpo"  # only the last budget's summaries: reward minus the group mean; others 0


class LossAggregation(StrEnum):
    """How per-token PPO losses become one number (DESIGN.md §2.5)."""

    SEQ_SUM_CONST = "seq_sum_const"  # sum over trainable tokens / (sequences × max length): the paper
    TOKEN_MEAN = "token_mean"  # mean over trainable tokens


class BRPOConfig(BaseModel):
    """Budgets, sampling counts, estimators and PPO settings for one run.

    Fields left as None take the algorithm's value: BRPO → S = 4, A = 4, uniform prior, `brpo` baseline
    and summaries; GRPO → S = 1, A = 1, `base` prior, `v2` baseline, `grpo` summaries.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Algorithm = Algorithm.BRPO
    b_max: int = Field(default=8000, gt=0, description="largest thinking budget b_S (tokens)")
    num_budgets: int | None = Field(default=None, ge=1, description="S")
    num_summaries: int | None = Field(default=None, ge=1, description="A: summaries per (trace, budget)")
    prior: PriorKind | None = None
    probs: tuple[float, ...] | None = Field(default=None, description="explicit prior; overrides `prior`")
    baseline: ThinkingBaseline | None = None
    summary_mode: SummaryMode | None = None
    discount: float = Field(default=2.0, gt=0, description="V1 weights discount**k over earlier budgets")
    group_size: int = Field(default=8, ge=1, description="G: traces per problem")
    summary_max_tokens: int = Field(default=128, gt=0)
    clip_low: float = Field(default=0.2, ge=0, lt=1)
    clip_high: float = Field(default=0.2, ge=0)
    kl_coef: float = Field(default=0.0, ge=0)
    aggregation: LossAggregation = LossAggregation.SEQ_SUM_CONST

    @model_validator(mode="after")
    def _check(self) -> BRPOConfig:
        single = self.resolved_num_budgets == 1 and self.resolved_num_summaries == 1
        if self.algorithm is Algorithm.GRPO and not single:
            raise ValueError(
                "algorithm 'grpo' uses one budget and one summary; leave num_budgets and num_summaries "
                "unset, or use algorithm 'brpo' with summary_mode 'grpo' for the GRPO ablations"
            )
        if self.probs is not None and self.prior is not None:
            raise ValueError("set either `prior` (a named prior) or `probs` (explicit), not both")
        self.budget_prior()  # validates b_max against S and the probabilities against the budgets
        return self

    @property
    def resolved_num_budgets(self) -> int:
        if self.num_budgets is not None:
            return self.num_budgets
        if self.probs is not None:
            return len(self.probs)
        return 1 if self.algorithm is Algorithm.GRPO else 4

    @property
    def resolved_num_summaries(self) -> int:
        if self.num_summaries is not None:
            return self.num_summaries
        return 1 if self.algorithm is Algorithm.GRPO else 4

    @property
    def resolved_baseline(self) -> ThinkingBaseline:
        if self.baseline is not None:
            return self.baseline
        return ThinkingBaseline.V2 if self.algorithm is Algorithm.GRPO else ThinkingBaseline.BRPO

    @property
    def resolved_summary_mode(self) -> SummaryMode:
        if self.summary_mode is not None:
            return self.summary_mode
        return SummaryMode.GRPO if self.algorithm is Algorithm.GRPO else SummaryMode.BRPO

    def budget_prior(self, context_length: int | None = None) -> BudgetPrior:
        """The thinking prior over `b_j = j * b_max / S`."""
        num = self.resolved_num_budgets
        if self.probs is not None:
            spaced = BudgetPrior.spaced(PriorKind.UNIFORM, self.b_max, num)
            return BudgetPrior.explicit(spaced.budgets, self.probs, context_length)
        kind = self.prior or (PriorKind.BASE if self.algorithm is Algorithm.GRPO else PriorKind.UNIFORM)
        return BudgetPrior.spaced(kind, self.b_max, num, context_length)
