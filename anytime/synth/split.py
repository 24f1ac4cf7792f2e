"""Train and held-out problems, disjoint by construction: a stable hash of the problem text decides.

A problem is held out (`"eval"`) when the SHA-256 of its UTF-8 text, read as a big-endian integer from
its first 8 bytes, is below `HELD_OUT_BUCKETS` modulo `BUCKETS`; every other problem is `"train"`.
The rule reads only the text, so membership does not depend on the seed, the draw or the task: a text
two tasks share (`digit-chain` and `digit-chain-detours` for chains of 3-8 steps) is held out in both.
Two seeds of one generator are not a held-out set: they overlap wherever the problem space is small.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")

BUCKETS = 10
HELD_OUT_BUCKETS = 2  # a fifth of the problem space is held out
HELD_OUT_RULE = f"sha256(problem)[:8] % {BUCKETS} < {HELD_OUT_BUCKETS}"


def split_of(problem_text: str) -> Split:
    """The split `problem_text` belongs to, the same on every machine and in every release."""
    digest = hashlib.sha256(problem_text.encode("utf-8")).digest()
    return "eval" if int.from_bytes(digest[:8], "big") % BUCKETS < HELD_OUT_BUCKETS else "train"


class SplitTooSmallError(ValueError):
    """A request for more distinct problems than a split holds."""
