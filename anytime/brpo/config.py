"""The algorithm's knobs as one validated, torch-free config (docs/method.md §2), with GRPO as a switch.

Estimators are named by enums; the tensor code looks them up in registries keyed by the same enums,
so a typo fails here, at validation, not deep inside a training step.

Defaults are the authors' rules (docs/method.md §2.6–2.8): collapsed budgets pool their summaries into one
baseline, A = 1 summaries are centred on the mean over the G traces, GRPO is S = 1, A = 1, and the loss
divides by one constant that does not depend on the arm. GRPO (the paper's baseline) is the same pipeline
with S = 1, A = 1, the `base` prior, the `v2` baseline and `grpo` summaries: `BRPOConfig(algorithm="grpo")`.
The paper's ablations (docs/method.md §5.4) are the `brpo` algorithm with some fields set: `PAPER_ARMS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.budgets import BudgetPrior, PriorKind

# BRPO's S and A when unset (the paper's AR runs: 4 budgets × 4 summaries); GRPO's are 1 and 1.
BRPO_NUM_BUDGETS = 4
BRPO_NUM_SUMMARIES = 4
# b_max becomes budget rows (SQL INTEGER, so no larger); the other token counts share its bound.
_MAX_SQL_INT = 2**31 - 1


class Algorithm(StrEnum):
    BRPO = "brpo"
    GRPO = "grpo"


class ThinkingBaseline(StrEnum):
    """Baseline subtracted from the thinking return `Q[g, j]` (docs/method.md §2.5)."""

    BRPO = "brpo"  # (j * V1 + (S - j) * V2) / S
    V1 = "v1"  # the trace's own discounted earlier scores
    V2 = "v2"  # the group mean return at the same budget (GRPO with returns)
    NONE = "none"  # 0: the advantage is the return


class SummaryMode(StrEnum):
    """Which summaries are trained, and against which baseline (docs/method.md §2.6).

    With A = 1 every mode centres a summary on the mean over the G traces at its budget (the authors'
    rule; a group of one trace gives advantage 0).
    """

    # The authors' decoupled summaries: every summary, minus the mean of all summaries written from its
    # prompt; budgets that collapse onto one cut (the trace ended before them) share one pool of k·A.
    BRPO = "brpo"
    # A variant (docs/method.md §2.6): as `brpo`, but each budget's A summaries pool alone, collapsed or not.
    BRPO_PER_BUDGET = "brpo_per_budget"
    # The authors' GRPO summaries: only the last budget's one summary (A = 1) is trained; the rest get 0.
    GRPO = "grpo"


class LossAggregation(StrEnum):
    """How per-token PPO losses become one number (docs/method.md §2.8)."""

    SEQ_SUM_CONST = "seq_sum_const"  # sum over trainable tokens / (trees × loss_normalizer): the paper
    TOKEN_MEAN = "token_mean"  # mean over trainable tokens


class BRPOConfig(BaseModel):
    """Budgets, sampling counts, estimators and PPO settings for one run.

    Fields left as None take the algorithm's value: BRPO → S = 4, A = 4, uniform prior, `brpo` baseline
    and summaries; GRPO → S = 1, A = 1, `base` prior, `v2` baseline, `grpo` summaries.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Algorithm = Algorithm.BRPO
    b_max: int = Field(
        default=8000, gt=0, le=_MAX_SQL_INT, description="largest thinking budget b_S (tokens)"
    )
    num_budgets: int | None = Field(default=None, ge=1, le=64, description="S; unset: the algorithm's")
    num_summaries: int | None = Field(
        default=None, ge=1, le=64, description="A: summaries per (trace, budget); unset: the algorithm's"
    )
    prior: PriorKind | None = None
    probs: tuple[float, ...] | None = Field(
        default=None, min_length=1, description="explicit prior over the budgets; overrides `prior`"
    )
    baseline: ThinkingBaseline | None = None
    summary_mode: SummaryMode | None = Field(
        default=None,
        description="brpo (the authors': collapsed budgets pool) | brpo_per_budget (per-budget pools) | "
        "grpo (only the last budget's summary, A = 1); unset: the algorithm's",
    )
    discount: float = Field(default=2.0, gt=0, description="V1 weights discount**k over earlier budgets")
    group_size: int = Field(default=8, ge=1, le=64, description="G: traces per problem")
    summary_max_tokens: int = Field(default=128, gt=0, le=_MAX_SQL_INT)
    clip_low: float = Field(default=0.2, ge=0, lt=1)
    clip_high: float = Field(default=0.2, ge=0)
    aggregation: LossAggregation = LossAggregation.SEQ_SUM_CONST
    loss_normalizer: int | None = Field(
        default=None,
        gt=0,
        le=_MAX_SQL_INT,
        description=(
            "seq_sum_const divides the summed token losses by trees × this many tokens, one constant for "
            f"every arm (the authors use their max response length). Unset: b_max + {BRPO_NUM_BUDGETS}·"
            f"{BRPO_NUM_SUMMARIES}·summary_max_tokens, the room of a tree of the paper's AR runs "
            "(S = 4 budgets × A = 4 summaries; 8000 + 16·128 = 10048 against the authors' 10176). It "
            "depends on b_max and summary_max_tokens only, never on the run's algorithm, S, A, baseline, "
            "prior or summary mode, so those arms share it; set it to compare runs that differ in b_max "
            "or summary_max_tokens"
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> BRPOConfig:
        num_budgets, num_summaries = self.resolved_num_budgets, self.resolved_num_summaries
        if self.algorithm is Algorithm.GRPO and (num_budgets, num_summaries) != (1, 1):
            raise ValueError(
                "algorithm 'grpo' is the authors' GRPO: one budget (b_max) and one summary (S = 1, A = 1); "
                f"got S = {num_budgets}, A = {num_summaries}. Leave num_budgets and num_summaries unset, or "
                "use algorithm 'brpo' with summary_mode 'grpo' for the GRPO ablations (PAPER_ARMS)"
            )
        if self.resolved_summary_mode is SummaryMode.GRPO and num_summaries != 1:
            raise ValueError(
                "summary_mode 'grpo' trains only the last budget's one summary against the mean over the "
                f"G traces, as the authors run it; it needs num_summaries 1 (got {num_summaries}). Set "
                "num_summaries 1 (GRPO+linear, GRPO+vr), or summary_mode 'brpo' to train every summary "
                "(GRPO+decouple)"
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
        return 1 if self.algorithm is Algorithm.GRPO else BRPO_NUM_BUDGETS

    @property
    def resolved_num_summaries(self) -> int:
        if self.num_summaries is not None:
            return self.num_summaries
        return 1 if self.algorithm is Algorithm.GRPO else BRPO_NUM_SUMMARIES

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

    @property
    def resolved_loss_normalizer(self) -> int:
        """Tokens per tree in the `seq_sum_const` denominator (docs/method.md §2.8; the authors' is 10176)."""
        if self.loss_normalizer is not None:
            return self.loss_normalizer
        return self.b_max + BRPO_NUM_BUDGETS * BRPO_NUM_SUMMARIES * self.summary_max_tokens

    def budget_prior(self, context_length: int | None = None) -> BudgetPrior:
        """The thinking prior over `b_j = j * b_max / S`."""
        num = self.resolved_num_budgets
        if self.probs is not None:
            spaced = BudgetPrior.spaced(PriorKind.UNIFORM, self.b_max, num)
            return BudgetPrior.explicit(spaced.budgets, self.probs, context_length)
        kind = self.prior or (PriorKind.BASE if self.algorithm is Algorithm.GRPO else PriorKind.UNIFORM)
        return BudgetPrior.spaced(kind, self.b_max, num, context_length)


def _brpo_arm(num_summaries: int, summary_mode: str, prior: str, baseline: str) -> Mapping[str, str | int]:
    """One row of docs/method.md §5.4's table on the four training budgets, columns in the table's order."""
    return MappingProxyType(
        {
            "algorithm": "brpo",
            "num_budgets": BRPO_NUM_BUDGETS,
            "num_summaries": num_summaries,
            "summary_mode": summary_mode,
            "prior": prior,
            "baseline": baseline,
        }
    )


# The paper's experiment matrix (docs/method.md §5.4, the authors' run_experiments.sh):
# `RunConfig(model=…, dataset=…, **PAPER_ARMS[arm])` launches one arm. GRPO is one budget b_max with A = 1,
# the base prior, the v2 baseline and grpo summaries; GRPO+vr+decouple is the same configuration as AR-base.
PAPER_ARMS: Mapping[str, Mapping[str, str | int]] = MappingProxyType(
    {
        "grpo": MappingProxyType({"algorithm": "grpo"}),
        "ar-linear": _brpo_arm(4, "brpo", "linear", "brpo"),
        "ar-uniform": _brpo_arm(4, "brpo", "uniform", "brpo"),
        "ar-base": _brpo_arm(4, "brpo", "base", "brpo"),
        "grpo+linear": _brpo_arm(1, "grpo", "linear", "v2"),
        "grpo+decouple": _brpo_arm(4, "brpo", "base", "v2"),
        "grpo+vr": _brpo_arm(1, "grpo", "base", "brpo"),
        "grpo+vr+decouple": _brpo_arm(4, "brpo", "base", "brpo"),
    }
)
