"""Learner throughput on one GPU: a 1.5B-shaped Qwen2 (random weights) on packed 8k-token trees, S = 4, A = 4.

Three measurements in one run, on the same card:
1. the bf16 matmul rate (8192³ GEMMs): the peak the MFU figures are read against;
2. the reference point: plain Hugging Face Qwen2, causal SDPA, 8,192-token sequences, bf16 autocast,
   gradient checkpointing, one AdamW step per sequence;
3. the learner (`services.learner.Learner.step`): FlexAttention with the tree mask on packed trees
   (prompt 128 + thinking 6,000 + 16 summary blocks of 8 inserted + 118 generated = 8,144 tokens, padded to
   8,192), old log-probs recomputed in a no-grad pass, 2 mini-batches. Reported twice: the update pass alone
   (forward + backward + AdamW, the quantity comparable with 2) and the whole step (the extra pass included).
MFU = 6 · parameters · tokens / seconds / measured bf16 rate (non-padding tokens; the recompute of gradient
checkpointing and attention FLOPs are not counted, as usual).

It also prints the packing figures of this tree shape: the micro-batch fill (tree tokens / padded tokens),
the token ratio naive / packed (a sequence per summary, `prompt + z[:c] + block`, vs one packed tree) and
an estimated step speed-up of packing over naive re-encoding, token ratio × (learner update rate /
reference rate): the naive sequences would train at about the reference's rate (shorter than 8k, so a
little faster per token: an upper-end estimate). `--json PATH` writes every figure for
`benchmarks/gpu_check.sh`.

Without CUDA (or with `--cpu-check`) it runs the same code path on a tiny config with tiny trees on the CPU,
to check shapes and plumbing; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shape:
    """Model and tree shape of one benchmark run."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    prompt_tokens: int
    budgets: tuple[int, ...]
    num_summaries: int
    summary_tokens: int  # generated, EOS included
    inserted_tokens: int  # ellipsis + `</think>` + delimiter ids opening each block
    sequence_tokens: int  # the micro-batch / reference sequence length

    @property
    def tree_tokens(self) -> int:
        blocks = len(self.budgets) * self.num_summaries
        return self.prompt_tokens + self.budgets[-1] + blocks * (self.inserted_tokens + self.summary_tokens)

    @property
    def naive_tokens(self) -> int:
        """Tokens of the tree re-encoded naively: a sequence `prompt + z[:c_j] + block` per summary block (the
        thinking tokens train in the full-trace ones, as `benchmarks/packing.py`'s naive step)."""
        block = self.prompt_tokens + self.inserted_tokens + self.summary_tokens
        return sum(self.num_summaries * (block + budget) for budget in self.budgets)


# DeepSeek-R1-Distill-Qwen-1.5B's shape (untied embeddings); trees as in the paper's 8k runs, scaled to 8k.
GPU_SHAPE = Shape(1536, 8960, 28, 12, 2, 151_936, 128, (1500, 3000, 4500, 6000), 4, 118, 8, 8192)
CPU_SHAPE = Shape(64, 128, 2, 4, 2, 512, 8, (16, 32, 48, 64), 4, 6, 4, 256)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-check", action="store_true", help="tiny shapes on the CPU (plumbing only)")
    parser.add_argument("--problems", type=int, default=4, help="problems per step (G = 4 traces each)")
    parser.add_argument("--steps", type=int, default=2, help="measured learner steps (after one warm-up)")
    parser.add_argument("--baseline-iters", type=int, default=6, help="measured reference iterations")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()  # before the heavy imports
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_check
    shape = GPU_SHAPE if cuda else CPU_SHAPE
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print("no CUDA (or --cpu-check): tiny shapes on the CPU; the figures below check plumbing only")
        torch.set_num_threads(1)  # tiny kernels: more threads only contend
        args.problems = 1
    assert shape.tree_tokens <= shape.sequence_tokens, "a tree must fit one micro-batch"
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}")
    print(
        f"tree: prompt {shape.prompt_tokens} + thinking {shape.budgets[-1]} + "
        f"{len(shape.budgets)}x{shape.num_summaries} blocks of "
        f"{shape.inserted_tokens}+{shape.summary_tokens} "
        f"= {shape.tree_tokens} tokens, padded to {shape.sequence_tokens}"
    )
    peak = matmul_rate(device, 8192 if cuda else 256)
    print(f"bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s (measured)")
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cuda": cuda,
        "torch": torch.__version__,
        "tree_tokens": shape.tree_tokens,
        "sequence_tokens": shape.sequence_tokens,
        "naive_tokens_per_tree": shape.naive_tokens,
        "matmul_tflops": peak / 1e12,
    }
    _write(args.json, results)  # what is known so far, should a later part fail

    baseline = reference_rate(shape, device, args.baseline_iters if cuda else 1)
    params = baseline.params
    results |= {
        "params": params,
        "reference_tokens_per_s": baseline.tokens_per_s,
        "reference_mfu": mfu(params, baseline.tokens_per_s, peak),
    }
    _write(args.json, results)
    precision = "bf16 autocast" if cuda else "fp32"
    print(f"model: Qwen2, {params:,} parameters (random weights), fp32 master weights, {precision}")
    print(
        f"reference  HF Qwen2, causal SDPA, {shape.sequence_tokens}-token sequences, grad checkpointing: "
        f"{baseline.tokens_per_s:,.0f} tokens/s, MFU {mfu(params, baseline.tokens_per_s, peak):.1%}"
    )
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    learner = learner_rate(shape, device, args.problems, args.steps if cuda else 1)
    update, step = learner.update_tokens_per_s, learner.step_tokens_per_s
    print(
        f"learner update ({'FlexAttention' if cuda else 'block-sparse SDPA'}, tree mask, packed trees): "
        f"{update:,.0f} tokens/s, "
        f"MFU {mfu(params, update, peak):.1%}"
    )
    print(
        f"learner whole step (with the old-log-prob pass): {step:,.0f} tokens/s, "
        f"MFU {mfu(params, step, peak):.1%} counting 6·P·T"
    )
    print(f"ratio learner update / reference: {update / baseline.tokens_per_s:.2f}")
    fill = learner.tokens / learner.padded_tokens
    token_ratio = shape.naive_tokens / shape.tree_tokens
    speedup = token_ratio * update / baseline.tokens_per_s
    print(
        f"packing: micro-batch fill {fill:.1%} ({learner.tokens:,.0f} tree tokens in "
        f"{learner.padded_tokens:,.0f} padded); naive / packed tokens {shape.naive_tokens:,} / "
        f"{shape.tree_tokens:,} = {token_ratio:.2f}x; est. packed vs naive step speed-up {speedup:.2f}x"
    )
    results |= {
        "learner_update_tokens_per_s": update,
        "learner_update_mfu": mfu(params, update, peak),
        "learner_step_tokens_per_s": step,
        "learner_step_mfu": mfu(params, step, peak),
        "learner_over_reference": update / baseline.tokens_per_s,
        "learner_step_s": learner.step_seconds,
        "micro_batch_fill": fill,
        "packing_token_ratio": token_ratio,
        "packing_speedup_estimate": speedup,
        "trees_per_step": args.problems * 4,
        "attention": "flex_attention" if cuda else _cpu_attention(device),
        "precision": "bf16" if cuda else "fp32",
    }
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    _write(args.json, results)


def _write(path: Path | None, results: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


def mfu(params: int, tokens_per_s: float, peak: float) -> float:
    return 6 * params * tokens_per_s / peak


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: Any, n: int) -> float:
    """bf16 FLOP/s of n×n GEMMs."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    iters = 20 if device.type == "cuda" else 2
    began = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - began)


def build_model(shape: Shape, attention: str, device: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        vocab_size=shape.vocab,
        max_position_embeddings=max(32_768, shape.sequence_tokens),
        tie_word_embeddings=False,
        use_sliding_window=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32)
    return model


@dataclass(frozen=True)
class Rate:
    tokens_per_s: float
    params: int


def reference_rate(shape: Shape, device: Any, iters: int) -> Rate:
    """Plain HF Qwen2 training on causal sequences: forward + backward + AdamW per sequence."""
    import torch

    model = build_model(shape, "sdpa", device)
    params = sum(p.numel() for p in model.parameters())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01, foreach=True)
    ids = torch.randint(0, shape.vocab, (1, shape.sequence_tokens), device=device)

    def one() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    one()  # warm-up
    _sync(device)
    began = time.perf_counter()
    for _ in range(iters):
        one()
    _sync(device)
    rate = shape.sequence_tokens * iters / (time.perf_counter() - began)
    return Rate(rate, params)


@dataclass(frozen=True)
class LearnerRate:
    update_tokens_per_s: float
    step_tokens_per_s: float
    step_seconds: float  # mean wall time of a measured step
    tokens: float  # tree tokens over the measured steps (one update pass each)
    padded_tokens: float  # micro-batch tokens the update passes ran, padding included


def learner_rate(shape: Shape, device: Any, problems: int, steps: int) -> LearnerRate:
    """Update-pass and whole-step tokens/s of `Learner.step` on synthetic packed trees."""
    from anytime.brpo.config import BRPOConfig
    from anytime.contracts.learn import LearnerConfig
    from services.learner.learner import Learner

    brpo = BRPOConfig(
        b_max=shape.budgets[-1],
        num_budgets=len(shape.budgets),
        num_summaries=shape.num_summaries,
        summary_max_tokens=shape.summary_tokens,
        group_size=4,
    )
    config = LearnerConfig(
        brpo=brpo,
        micro_batch_tokens=shape.sequence_tokens,
        pad_to_token_budget=True,
        precision="bf16" if device.type == "cuda" else "fp32",
        gradient_checkpointing=True,
    )
    attention = "flex_attention" if device.type == "cuda" else _cpu_attention(device)
    learner = Learner(build_model(shape, attention, device), config, pad_id=0, device=device)
    learner.step(*synthetic_data(shape, problems, 0))  # warm-up: FlexAttention compiles here
    update_tokens = update_seconds = step_tokens = step_seconds = padded_tokens = 0.0
    for step in range(1, steps + 1):
        trajectories, verdicts = synthetic_data(shape, problems, step)
        _sync(device)
        began = time.perf_counter()
        metrics = learner.step(trajectories, verdicts)
        _sync(device)
        step_seconds += time.perf_counter() - began
        step_tokens += metrics["batch/tokens"]
        update_tokens += metrics["batch/tokens"]
        update_seconds += metrics["perf/update_s"]
        padded_tokens += metrics["batch/micro_batches"] * shape.sequence_tokens  # padded to the budget
        assert metrics["batch/tokens"] == problems * 4 * shape.tree_tokens, "trees are not the intended size"
    return LearnerRate(
        update_tokens_per_s=update_tokens / update_seconds,
        step_tokens_per_s=step_tokens / step_seconds,
        step_seconds=step_seconds / steps,
        tokens=update_tokens,
        padded_tokens=padded_tokens,
    )


def synthetic_data(shape: Shape, problems: int, step: int) -> tuple[Any, Any]:
    """Trajectories and verdicts of one step: `problems` × G = 4 traces that all think to b_max."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's test fixtures
    from tests.fixtures.synthetic import StepShape, synthetic_step

    step_shape = StepShape(
        problems=problems,
        group_size=4,
        budgets=shape.budgets,
        num_summaries=shape.num_summaries,
        prompt_tokens=shape.prompt_tokens,
        summary_tokens=shape.summary_tokens,
        finish_reasons=("length",),  # every thought runs to b_max: full-size trees
    )
    half = shape.inserted_tokens // 2
    markers = range(1, 1 + shape.inserted_tokens + 2)
    return synthetic_step(
        step_shape,
        vocab=range(markers.stop, shape.vocab),
        ellipsis_ids=tuple(markers[:half]),
        delimiter_ids=tuple(markers[half : shape.inserted_tokens]),
        think_end_id=markers[-2],
        eos_id=markers[-1],
        seed=step,
        step=step,
        policy_version=step,
    )


def _cpu_attention(device: Any) -> str:
    from anytime.brpo.attention import tree_attention_implementation

    return tree_attention_implementation(device)


if __name__ == "__main__":
    main()
