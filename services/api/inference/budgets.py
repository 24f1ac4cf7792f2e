"""Which budgets a request thinks to: the client's, its `reasoning_effort`'s or `min_accuracy`'s (read off the
model's evaluation curve, `services.api.inference.effort`), or the server's default.

`room` is what the model's context leaves for thinking after the prompt, the inserted ellipsis and
delimiter, and the answer cap. A budget the client wrote is refused when it does not fit (the client asked
for something the server cannot do); a budget the server chose (from an effort or the default) is lowered to
the room instead (a long prompt is not the client's mistake). The budget `min_accuracy` picks is refused when
it does not fit: lowered, it would no longer reach the accuracy asked for.
"""

from __future__ import annotations

from services.api.inference.effort import (
    AccuracyUnreachable,
    EffortMapping,
    default_efforts,
    effort_budget,
)
from services.api.inference.schemas import AnytimeParams

__all__ = ["BudgetRefused", "effort_budget", "request_budgets"]


class BudgetRefused(ValueError):
    """The request's budgets cannot be served; the message says why (the route answers 422)."""


def request_budgets(
    body: AnytimeParams,
    room: int,
    default_budget: int,
    max_budgets: int,
    context: str,
    efforts: EffortMapping | None = None,
) -> tuple[int, ...]:
    """The ascending budgets to answer at; `context` explains `room` in the refusal messages. `efforts`
    is the model's mapping (unset: the default ¼/1/4 × `default_budget`, no curve)."""
    if room < 1:
        raise BudgetRefused(f"no room to think: {context}")
    mapping = efforts or EffortMapping("default", default_efforts(default_budget), "no evaluation given")
    if body.min_accuracy is not None:
        try:
            reaching = mapping.budget_reaching(body.min_accuracy)
        except AccuracyUnreachable as exc:
            raise BudgetRefused(str(exc)) from exc
        if reaching > room:
            raise BudgetRefused(
                f"the smallest budget reaching accuracy {body.min_accuracy} is {reaching}, above the model's "
                f"context: {context}, leaving at most {room} thinking tokens"
            )
        return (reaching,)
    given = body.budgets or ([body.budget] if body.budget is not None else None)
    if given is None:
        chosen = (
            mapping.budget(body.reasoning_effort) if body.reasoning_effort is not None else default_budget
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
