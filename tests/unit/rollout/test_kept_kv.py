"""The transformers engine's kept KV (`KeptKV`): which held sequence a prompt reuses, and what is held."""

from __future__ import annotations

import pytest
import torch

from services.engines.transformers_engine import KeptKV, KeptSequence, _common_prefix


def _sequence(ids: tuple[int, ...]) -> KeptSequence:
    """One layer, one KV head, head dim 2."""
    keys = torch.tensor([[float(t), float(j)] for j, t in enumerate(ids)]).reshape(1, len(ids), 2)
    return KeptSequence(ids, (keys,), (keys.clone(),))


@pytest.mark.parametrize(
    ("a", "b", "length"),
    [
        ((), (1,), 0),
        ((1, 2, 3), (1, 2, 3), 3),
        ((1, 2, 3), (1, 2), 2),
        ((1, 2, 3), (1, 9, 3), 1),
        ((5,), (6,), 0),
    ],
)
def test_common_prefix(a: tuple[int, ...], b: tuple[int, ...], length: int) -> None:
    assert _common_prefix(a, b) == _common_prefix(b, a) == length


def test_common_prefix_of_long_sequences() -> None:
    a = tuple(range(1000))
    assert _common_prefix(a, (*a[:637], -1, *a[638:])) == 637


def test_a_prompt_reuses_the_longest_shared_prefix_but_never_its_last_token() -> None:
    kept = KeptKV(100)
    kept.put(_sequence((1, 2, 3, 4)))
    kept.put(_sequence((1, 2, 7)))
    length, sequence = kept.match((1, 2, 3, 9, 9))
    assert length == 3 and sequence is not None and sequence.ids == (1, 2, 3, 4)
    # the prompt's last token is always fed: its logits are the first the prefill must give
    assert kept.match((1, 2, 3, 4))[0] == 3
    assert kept.match((1, 2, 7, 8))[0] == 3
    assert kept.match((5, 1, 2)) == (0, None)
    assert kept.match((1,)) == (0, None)


def test_a_sequence_that_extends_a_held_one_replaces_it() -> None:
    """A thought sampled in segments is held once, as its latest segment."""
    kept = KeptKV(100)
    kept.put(_sequence((1, 2)))
    kept.put(_sequence((1, 2, 3, 4)))
    assert len(kept) == 1 and kept.tokens == 4
    kept.put(_sequence((1, 2, 3)))  # already inside the held one: nothing new
    assert len(kept) == 1 and kept.tokens == 4
    kept.put(_sequence((1, 2, 3, 4)))  # the same again replaces it
    assert len(kept) == 1 and kept.tokens == 4


def test_the_least_recently_used_go_first_once_over_the_token_limit() -> None:
    kept = KeptKV(7)
    kept.put(_sequence((1, 1, 1)))
    kept.put(_sequence((2, 2, 2)))
    assert kept.match((1, 1, 1, 0))[0] == 3  # (1, 1, 1) is now the most recently used
    kept.put(_sequence((3, 3)))
    assert kept.tokens == 5 and kept.match((2, 2, 2, 0)) == (0, None)
    kept.put(_sequence(tuple(range(10, 18))))  # longer than the limit: not held
    assert kept.tokens == 5
    kept.clear()
    assert len(kept) == 0 and kept.tokens == 0 and kept.match((1, 1, 1, 0)) == (0, None)


def test_a_kept_sequence_holds_one_kv_position_per_id() -> None:
    with pytest.raises(ValueError, match="kept KV of 2 tokens for 3 ids"):
        KeptSequence((1, 2, 3), (torch.zeros(1, 2, 4),), (torch.zeros(1, 2, 4),))
