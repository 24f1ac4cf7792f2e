"""One learner step (forward + backward) on packed trees vs naive per-summary re-encoding (tiny model, CPU).

S = 4 budgets, A = 4 summaries of 128 tokens each, thinking lengths spread over [b_max/4, b_max]. Naive
runs every summary sequence `prompt + z[:c_j] + inserted + delimiter + summary` on its own (S·A
re-encodings of the trace; the thinking tokens train in the first full-trace sequence). Packed runs all
trees in one forward with the tree mask and the block-sparse kernel, the CPU default (trees back to back in
one row, no padding; `anytime.brpo.attention`: a fused causal call per trunk and block, one unmasked call
per cut over the prefix its blocks share, merged by log-sum-exp); `--dense` adds dense-mask SDPA (a row per
tree) for comparison. Both paths compute log-probs at every token. Prints the times, the speed-ups and
the largest log-prob difference between packed and naive, all from this run; `--json PATH` also writes them
(for `benchmarks/gpu_check.sh`).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.brpo.attention import tree_attention_implementation
from anytime.brpo.cuts import Cut, cut_of_budget, cut_trace
from anytime.brpo.logprobs import packed_logprobs
from anytime.brpo.packing import PackedBatch, PackedTree, collate_trees, pack_tree
from anytime.model_facts import ModelFacts
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat
from anytime.tinymodel.build import TinyModelSpec, build_tiny_model

NUM_BUDGETS, NUM_SUMMARIES, SUMMARY_TOKENS = 4, 4, 128


@dataclass(frozen=True)
class Trace:
    prompt: list[int]
    thinking: list[int]
    cuts: list[Cut]
    summaries: list[list[list[int]]]
    tree: PackedTree

    def sequences(self) -> list[list[int]]:
        """The naive sequences, one per summary block, in block order."""
        by_budget = cut_of_budget(self.cuts)
        return [
            by_budget[b.budget_index].summary_prompt(self.prompt, self.thinking)
            + self.summaries[b.budget_index][b.sample_index]
            for b in self.tree.blocks
        ]


def make_traces(tokenizer: Any, facts: ModelFacts, b_max: int, count: int, seed: int) -> list[Trace]:
    rng = random.Random(seed)
    vocab = [i for i in range(len(tokenizer)) if i not in {facts.think_end_id, facts.eos_id, facts.pad_id}]
    budgets = [j * b_max // NUM_BUDGETS for j in range(1, NUM_BUDGETS + 1)]
    prompt = prompt_ids(tokenizer, "Digit chain: start at 3, then +4 *2. Keep only the last digit.")
    traces = []
    for index in range(count):
        length = b_max // 4 + index * (b_max - b_max // 4) // max(1, count - 1)
        thinking = [rng.choice(vocab) for _ in range(length - 1)] + [facts.think_end_id]
        cuts = cut_trace(length, "think_end", budgets, facts.ellipsis_ids, facts.delimiter_ids)
        summaries = [
            [[rng.choice(vocab) for _ in range(SUMMARY_TOKENS)] for _ in range(NUM_SUMMARIES)]
            for _ in budgets
        ]
        traces.append(Trace(prompt, thinking, cuts, summaries, pack_tree(prompt, thinking, cuts, summaries)))
    return traces


def naive_step(model: Any, traces: list[Trace]) -> list[torch.Tensor]:
    """Forward + backward of every summary sequence on its own; returns each tree's log-probs [length]."""
    rows = []
    for trace in traces:
        tree = trace.tree
        trunk = tree.prompt_len + tree.thinking_len
        full = next(i for i, b in enumerate(tree.blocks) if b.cut == tree.thinking_len)
        row = torch.zeros(tree.length)
        for index, (block, ids) in enumerate(zip(tree.blocks, trace.sequences(), strict=True)):
            x = torch.tensor([ids])
            logprobs = model(input_ids=x).logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]
            span = block.end - block.start
            trained = logprobs[-span:].sum()
            if index == full:  # the thinking tokens train once, from the first full-trace sequence
                trained = trained + logprobs[tree.prompt_len - 1 : trunk - 1].sum()
                row[1:trunk] = logprobs[: trunk - 1].detach()
            trained.backward()
            row[block.start : block.end] = logprobs[-span:].detach()
        rows.append(row)
    return rows


def packed_step(model: Any, batch: PackedBatch) -> torch.Tensor:
    logprobs = packed_logprobs(model, batch).logprobs
    (logprobs * batch.trainable).sum().backward()
    return logprobs.detach()


def timed(step: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = step(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--b-max", type=int, default=2048)
    parser.add_argument("--trees", type=int, default=3)
    parser.add_argument("--dense", action="store_true", help="also time dense-mask SDPA (slow: ~T² per tree)")
    # One thread: ratios stay stable on a small machine shared with other work.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = TinyModelSpec(max_position_embeddings=2 * args.b_max + 1024)  # block positions continue past b_max
    implementations = {"block_sparse": tree_attention_implementation("cpu"), "sdpa": "sdpa"}
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "tiny", seed=0, spec=spec)
        tokenizer = AutoTokenizer.from_pretrained(path)
        models = {
            name: AutoModelForCausalLM.from_pretrained(
                path, attn_implementation=impl, dtype=torch.float32
            ).train()
            for name, impl in implementations.items()
        }
    facts = ModelFacts.from_tokenizer(tokenizer, SummaryFormat())
    traces = make_traces(tokenizer, facts, args.b_max, args.trees, seed=0)
    trees = [t.tree for t in traces]
    one_row = collate_trees(trees, facts.pad_id, max_row_tokens=sum(t.length for t in trees))
    warm = make_traces(tokenizer, facts, 64, 1, seed=1)  # untimed warm-up of both paths
    naive_step(models["sdpa"], warm)
    packed_step(models["block_sparse"], collate_trees([warm[0].tree], facts.pad_id))

    naive_time, naive_rows = timed(naive_step, models["sdpa"], traces)
    results = {
        "block-sparse SDPA, trees in one row": (one_row, *timed(packed_step, models["block_sparse"], one_row))
    }
    if args.dense:
        batch = collate_trees(trees, facts.pad_id)
        results["dense-mask SDPA, a row per tree"] = (batch, *timed(packed_step, models["sdpa"], batch))

    naive_tokens = sum(len(ids) for trace in traces for ids in trace.sequences())
    packed_tokens = sum(tree.length for tree in trees)
    print(
        f"{args.trees} trees, thinking lengths {[t.thinking_len for t in trees]}, b_max {args.b_max}, "
        f"S={NUM_BUDGETS}, A={NUM_SUMMARIES}, summaries of {SUMMARY_TOKENS} tokens, {args.threads} thread(s)"
    )
    print(
        f"tokens per step: naive {naive_tokens}, packed {packed_tokens} ({naive_tokens / packed_tokens:.2f}x)"
    )
    print(f"naive re-encoding, a sequence per summary: {naive_time:7.2f} s")
    diff = 0.0
    speedups = {}
    for name, (layout, seconds, logprobs) in results.items():
        speedups[name] = naive_time / seconds
        print(f"packed, {name}: {seconds:7.2f} s  -> {naive_time / seconds:.2f}x faster")
        for index, naive_row in enumerate(naive_rows):
            diff = max(diff, (layout.tree_values(logprobs, index) - naive_row).abs().max().item())
    print(f"max |log-prob difference| packed vs naive: {diff:.2e}")
    if args.json is not None:
        figures = {
            "trees": args.trees,
            "b_max": args.b_max,
            "threads": args.threads,
            "naive_tokens": naive_tokens,
            "packed_tokens": packed_tokens,
            "token_ratio": naive_tokens / packed_tokens,
            "naive_s": naive_time,
            "packed_s": results["block-sparse SDPA, trees in one row"][1],
            "speedup": speedups["block-sparse SDPA, trees in one row"],
            "speedups": speedups,
            "max_logprob_diff": diff,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
