"""Which budgets a request thinks to: the client's, its `reasoning_effort`'s, or the server's default.

`room` is what the model's context leaves for thinking after the prompt, the inserted ellipsis and
delimiter, and the answer cap. A budget the client wrote is refused when it does not fit (the client asked
for something the server cannot do); a budget the server chose (from an effort or the default) is lowered to
the room instead (a long prompt is not the client's mistake).
"""

from __future__ import annotations

from services.api.inference.schemas import REASONING_EFFORT_FACTORS, AnytimeParams


class BudgetRefused(ValueError):
    """The request's budgets cannot be served; the message says why (the route answers 422)."""


def effort_budget(effort: str, default_budget: int) -> int:
    """`reasoning_effort` → thinking tokens: `REASONING_EFFORT_FACTORS[effort]` × the default, at least 1."""
    return max(1, round(REASONING_EFFORT_FACTORS[effort] * default_budget))


def request_budgets(
    body: AnytimeParams, room: int, default_budget: int, max_budgets: int, context: str
) -> tuple[int, ...]:
    """The ascending budgets to answer at; `context` explains `room` in the refusal messages."""
    if room < 1:
        raise BudgetRefused(f"no room to think: {context}")
    given = body.budgets or ([body.budget] if body.budget is not None else None)
    if given is None:
        chosen = (
            effort_budget(body.reasoning_effort, default_budget)
            if body.reasoning_effort is not None
            else default_budget
        )
        return (min(chosen, room),)
    if len(given) > max_budgets:
        raise BudgetRefused(f"too many budgets: {len(given)}; at most {max_budgets} per request")
    if given[-1] > room:
        raise BudgetRefused(
            f"budget {given[-1]} is above the model's context: {context}, leaving at most {room} "
            "thinking tokens"
        )
    return tuple(given)
