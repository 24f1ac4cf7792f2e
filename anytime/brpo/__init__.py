"""The BRPO algorithm (docs/method.md §2): budgets, cuts and summary prompts, advantages, loss, packing.

`budgets`, `cuts` and `config` are torch-free (the API and the rollout import them). The tensor code
(`advantages`, `tokens`, `loss`, `packing`, `logprobs`) needs torch; its names are exported
here lazily, so `import anytime.brpo.cuts` does not pull torch in:

    from anytime.brpo import thinking_advantages, summary_advantages
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from anytime.brpo.budgets import BudgetPrior, PriorKind
from anytime.brpo.config import Algorithm, BRPOConfig, LossAggregation, SummaryMode, ThinkingBaseline
from anytime.brpo.cuts import Cut, FinishReason, cut_trace, finish_reason, split_by_budget, trace_cuts

if TYPE_CHECKING:
    from anytime.brpo.advantages import brpo_advantages, summary_advantages, thinking_advantages
    from anytime.brpo.logprobs import TokenLogProbs, packed_logprobs
    from anytime.brpo.loss import PolicyLoss, PPOLossConfig, ppo_loss
    from anytime.brpo.packing import PackedBatch, PackedTree, collate_trees, pack_tree
    from anytime.brpo.tokens import TokenRole, token_advantages

# name → the torch module that defines it (imported on first access)
_LAZY = {
    "thinking_advantages": "advantages",
    "summary_advantages": "advantages",
    "brpo_advantages": "advantages",
    "TokenRole": "tokens",
    "token_advantages": "tokens",
    "PackedTree": "packing",
    "PackedBatch": "packing",
    "pack_tree": "packing",
    "collate_trees": "packing",
    "TokenLogProbs": "logprobs",
    "packed_logprobs": "logprobs",
    "PPOLossConfig": "loss",
    "PolicyLoss": "loss",
    "ppo_loss": "loss",
}

__all__ = [
    "Algorithm",
    "BRPOConfig",
    "BudgetPrior",
    "Cut",
    "FinishReason",
    "LossAggregation",
    "PPOLossConfig",
    "PackedBatch",
    "PackedTree",
    "PolicyLoss",
    "PriorKind",
    "SummaryMode",
    "ThinkingBaseline",
    "TokenLogProbs",
    "TokenRole",
    "brpo_advantages",
    "collate_trees",
    "cut_trace",
    "finish_reason",
    "pack_tree",
    "packed_logprobs",
    "ppo_loss",
    "split_by_budget",
    "summary_advantages",
    "thinking_advantages",
    "token_advantages",
    "trace_cuts",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anytime.brpo' has no attribute {name!r}")
    return getattr(importlib.import_module(f"anytime.brpo.{module}"), name)
