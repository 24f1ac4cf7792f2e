"""The verdict cache: one grading per (normalised ground truth, normalised extracted answer).

One answer is repeated across the budgets of a trace and the A summaries of a budget, so most verdicts
of a rollout step are repeats. The key is exactly what the grader children receive (`truth_texts`,
`normalise_answer`), so a hit returns the verdict the grader would have returned.

Cached: correct, incorrect, unparseable and timeout (a hang is a property of the expression, and
re-grading it would cost another full timeout and a process restart per repeat; the status stays
`timeout` and is counted as such). Not cached: error (a crashed grader or a bad ground truth may be
transient or fixed). Least recently used entries are dropped beyond `max_entries`; 0 disables the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from anytime.verdict import Status

CacheKey = tuple[tuple[str, ...], str]
CACHEABLE = frozenset({Status.CORRECT, Status.INCORRECT, Status.UNPARSEABLE, Status.TIMEOUT})


@dataclass(frozen=True)
class CachedVerdict:
    status: Status
    message: str | None = None


class VerdictCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 0:
            raise ValueError(f"cache size must be ≥ 0 (0 disables the cache); got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, CachedVerdict] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedVerdict | None:
        verdict = self._entries.get(key)
        if verdict is not None:
            self._entries.move_to_end(key)
        return verdict

    def put(self, key: CacheKey, verdict: CachedVerdict) -> None:
        if self.max_entries == 0 or verdict.status not in CACHEABLE:
            return
        self._entries[key] = verdict
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
