"""Build the tiny reasoner: a tokenizer from synthetic task text and a randomly initialised Qwen2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from anytime.model_dir import save_model_dir
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from anytime.synth import TASKS
from anytime.tinymodel.chat_formats import CHAT_FORMATS, ChatFormatName
from anytime.tinymodel.tokenizer import build_tokenizer


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny Qwen2: ~3M parameters; head_dim 64 is one that vLLM's CPU attention supports.
    `chat_format`: the tokenizer's special tokens and template, the project's own or R1-Distill's
    (`anytime.tinymodel.chat_formats`)."""

    vocab_size: int = 384
    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    corpus_problems_per_task: int = 3000
    chat_format: ChatFormatName = "tiny"


def tokenizer_corpus(spec: TinyModelSpec, fmt: SummaryFormat, seed: int) -> Iterator[str]:
    """The project's own data: every synthetic task's training problems, traces and answers in the summary
    format (the held-out split stays out of everything the model is built from)."""
    for task in TASKS.values():
        for problem in task.generate(spec.corpus_problems_per_task, seed, split="train"):
            yield problem.problem
            yield f"{problem.trace}\n{fmt.think_end}{fmt.delimiter}\\boxed{{{problem.answer}}}"
    yield fmt.ellipsis + fmt.delimiter


def build_tiny_model(out: Path, seed: int = 0, spec: TinyModelSpec | None = None) -> Path:
    """Write tokenizer, config, generation config and safetensors weights to `out` (atomically)."""
    spec = spec or TinyModelSpec()
    fmt = SummaryFormat()
    whole = tuple(dict.fromkeys(t for task in TASKS.values() for t in task.whole_tokens))
    chat = CHAT_FORMATS[spec.chat_format]
    tokenizer = build_tokenizer(tokenizer_corpus(spec, fmt, seed), spec.vocab_size, fmt, whole, chat)
    facts = ModelFacts.from_tokenizer(tokenizer, fmt)  # fails early if a marker is not one token
    # The tiny format has no BOS: its EOS stands in, as before.
    bos_id = facts.eos_id if tokenizer.bos_token_id is None else int(tokenizer.bos_token_id)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 64) * 64,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=facts.eos_id,
        pad_token_id=facts.pad_id,
        dtype="float32",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=facts.eos_id, pad_token_id=facts.pad_id, bos_token_id=bos_id
    )
    spec_json = json.dumps({"seed": seed, **asdict(spec)}, indent=2) + "\n"
    return save_model_dir(model, tokenizer, out, extra_files={"anytime_tiny_spec.json": spec_json})
