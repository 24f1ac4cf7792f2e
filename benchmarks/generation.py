"""Batched vs sequential generation with the transformers engine on the tiny model (CPU).

Prints tokens/s for both and the speed-up of batching, measured in the same run on the same model.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat
from anytime.synth import get_task
from anytime.tinymodel.build import build_tiny_model
from services.engines.seam import GenerationRequest
from services.engines.transformers_engine import TransformersEngine

PROMPTS = 16
NEW_TOKENS = 128


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "tiny", seed=0)
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    facts = ModelFacts.from_tokenizer(tokenizer, SummaryFormat())
    problems = get_task("digit-chain").generate(PROMPTS, seed=0)
    engine = TransformersEngine(model, tokenizer, facts, max_rows=PROMPTS)
    greedy = SamplingConfig(temperature=0.0)
    # No stop tokens: every completion runs the full length, so both sides generate the same tokens.
    requests = [
        GenerationRequest(str(i), tuple(prompt_ids(tokenizer, p.problem)), 1, NEW_TOKENS, ())
        for i, p in enumerate(problems)
    ]
    engine.generate([GenerationRequest("warm-up", requests[0].prompt_ids, 2, 8, ())], greedy)

    started = time.perf_counter()
    for request in requests:
        engine.generate([request], greedy)
    sequential = time.perf_counter() - started

    started = time.perf_counter()
    engine.generate(requests, greedy)
    batched = time.perf_counter() - started

    tokens = PROMPTS * NEW_TOKENS
    print(f"sequential: {tokens / sequential:8.0f} tok/s ({sequential:.2f} s for {PROMPTS} x {NEW_TOKENS})")
    print(f"batched:    {tokens / batched:8.0f} tok/s ({batched:.2f} s)")
    print(f"batching speed-up: {sequential / batched:.2f}x")


if __name__ == "__main__":
    main()
