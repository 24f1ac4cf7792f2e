"""Train and held-out synthetic problems are disjoint by construction, stably, and eval draws are distinct."""

from __future__ import annotations

import hashlib
import json

import pytest

from anytime.synth import TASKS, DigitChainTask, SplitTooSmallError, get_task, split_of
from anytime_cli.demo import HELD_OUT_PROBLEMS, TRAIN_PROBLEMS
from tests.conftest import anytime_cli

# Sizes of each task's splits under sha256(problem)[:8] % 10 < 2; a change here changes every held-out set.
SPLIT_SIZES = {"digit-chain": (1234, 326), "digit-chain-detours": (2083, 517)}


def chain_task(name: str) -> DigitChainTask:
    task = get_task(name)
    assert isinstance(task, DigitChainTask), f"{name}: enumerate its problem space here"
    return task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_large_train_draw_and_the_whole_eval_split_share_no_problem(name: str) -> None:
    task = get_task(name)
    train = {p.problem for p in task.generate(2 * TRAIN_PROBLEMS, seed=0, split="train")}
    held_out = task.generate(task.split_size("eval"), seed=0, split="eval")
    texts = {p.problem for p in held_out}
    assert len(texts) == len(held_out) == SPLIT_SIZES[name][1]  # distinct, and the whole split
    assert train.isdisjoint(texts)
    assert len(train) > 0.95 * SPLIT_SIZES[name][0]  # the train draw covers its split, so the check bites


@pytest.mark.parametrize("name", sorted(TASKS))
def test_split_sizes_partition_the_problem_space(name: str) -> None:
    task = chain_task(name)
    space = task.problem_space()
    assert len({chain.text for chain in space}) == len(space)
    assert (task.split_size("train"), task.split_size("eval")) == SPLIT_SIZES[name]
    assert sum(SPLIT_SIZES[name]) == len(space)


def test_membership_is_the_hash_of_the_text_checked_by_hand() -> None:
    text = "Digit chain: start at 0. Apply +1 six times, keeping only the last digit each time."
    # 0x8eaae33faf39448b = 10280278962088789131, which ends in 1: 1 < 2, so held out.
    assert hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] == "8eaae33faf39448b"
    assert int("8eaae33faf39448b", 16) == 10280278962088789131
    assert split_of(text) == "eval"
    # 0x364e6f14ddcf1196 ends in 8 in decimal: a training problem (the docs' example).
    example = "Digit chain: start at 7. Apply *3 four times, keeping only the last digit each time."
    assert int(hashlib.sha256(example.encode("utf-8")).hexdigest()[:16], 16) % 10 == 8
    assert split_of(example) == "train"


def test_the_split_ignores_the_task_and_the_seed() -> None:
    """A text both tasks can pose is held out in both; every draw of a split stays in it."""
    for name in TASKS:
        for seed in (0, 7):
            assert all(split_of(p.problem) == "eval" for p in get_task(name).generate(50, seed, split="eval"))
            assert all(split_of(p.problem) == "train" for p in get_task(name).generate(200, seed))
    short = {c.text for c in chain_task("digit-chain").problem_space()}
    assert short <= {c.text for c in chain_task("digit-chain-detours").problem_space()}


def test_eval_draws_are_deterministic_per_seed_and_named_as_held_out() -> None:
    task = get_task("digit-chain-detours")
    first = task.generate(20, seed=3, split="eval")
    assert first == task.generate(20, seed=3, split="eval")
    assert first != task.generate(20, seed=4, split="eval")
    assert [p.id for p in first[:2]] == ["digit-chain-detours-eval-0", "digit-chain-detours-eval-1"]


def test_asking_for_more_held_out_problems_than_the_split_holds_is_refused() -> None:
    task = get_task("digit-chain")
    with pytest.raises(SplitTooSmallError, match="asked for 327 distinct held-out problems, but its eval"):
        task.generate(327, seed=0, split="eval")
    with pytest.raises(SplitTooSmallError, match=r"holds only 326 .* ask for at most 326"):
        task.generate(1000, seed=0, split="eval")


def test_an_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split 'test'; expected one of train, eval"):
        get_task("digit-chain").generate(1, seed=0, split="test")  # type: ignore[arg-type]


def test_the_demo_and_science_held_out_files_fit_every_eval_split() -> None:
    assert all(eval_size >= HELD_OUT_PROBLEMS for _, eval_size in SPLIT_SIZES.values())


def test_cli_writes_a_held_out_file_and_refuses_too_many(tmp_path) -> None:
    out = tmp_path / "eval.jsonl"
    result = anytime_cli("data", "synth", "--n", "5", "--split", "eval", "--out", str(out))
    assert "5 digit-chain problems (eval split)" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(split_of(r["problem"]) == "eval" for r in rows)
    refused = anytime_cli("data", "synth", "--n", "400", "--split", "eval", "--out", str(out), check=False)
    assert refused.returncode != 0 and "ask for at most 326" in refused.stderr
    wrong = anytime_cli("data", "synth", "--split", "test", "--out", str(out), check=False)
    assert wrong.returncode != 0 and "--split must be one of train, eval" in wrong.stderr
