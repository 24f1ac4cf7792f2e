"""Inference with a `budget` through the API vs the raw engine generating the same tokens (CPU, tiny model).

Ours: the `openai` client → `/v1/chat/completions` (uvicorn in this process, default inference settings)
→ the round batcher → the transformers engine: thinking up to the budget, the cut, the answer. The engine
keeps the thought's KV (`GenerationRequest.keep_kv`, `KeptKV`), so the answer prefills only the last
thought token + inserted + delimiter, not prompt + thinking again. Raw: one `engine.generate` of the same
number of generated tokens (thinking + answer, no stop ids) on the same engine object. Greedy, the random
tiny model (its thought never closes, so it thinks the whole budget). Medians of interleaved repeats.

Two goals, each printed with its ratio: one budget ≤ 1.05×; four budgets from one thought (b/4, b/2, 3b/4,
b: one round per budget, four answers, each cut from the kept thought) ≤ 1.10× against the raw engine
generating thinking + all four answers' tokens. The four answers are decoded one after another, as the
thought passes each budget (each is streamed as soon as it is ready), so the decode steps match the raw
run's; what the ratio measures is the overhead of rounds, cuts and short prefills.

    .venv/bin/python benchmarks/inference.py [--budget 256] [--answer-tokens 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import openai
import torch
import uvicorn

from anytime.contracts.sampling import SamplingConfig
from anytime.processes import free_port
from anytime.synth import get_task
from anytime.tinymodel.build import build_tiny_model
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.engines.seam import GenerationRequest

KEY = "bench-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=256)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "tiny", seed=0)
        settings = ApiSettings(
            ANYTIME_DATABASE_URL=f"sqlite:///{tmp}/anytime.db",
            ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
            api_key=KEY,
            inference_model=str(model),
        )
        app = create_app(settings)
        with _serve(app) as base_url:
            client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=600)
            served = app.state.inference._models[str(model)]
            _compare(client, served.engine, args)


def _compare(client: openai.OpenAI, engine: object, args: argparse.Namespace) -> None:
    problem = get_task("digit-chain").generate(1, seed=0)[0].problem
    tokenizer = engine.tokenizer  # type: ignore[attr-defined]
    prompt = tuple(
        tokenizer.encode(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
            ),
            add_special_tokens=False,
        )
    )
    greedy = SamplingConfig(temperature=0.0)

    def ours(**extra: object) -> tuple[float, int]:
        started = time.perf_counter()
        response = client.chat.completions.create(
            model="anytime",
            messages=[{"role": "user", "content": problem}],
            temperature=0,
            max_tokens=args.answer_tokens,
            extra_body=extra,
        )
        elapsed = time.perf_counter() - started
        assert response.usage is not None
        return elapsed, response.usage.completion_tokens

    def raw(tokens: int) -> float:
        started = time.perf_counter()
        engine.generate([GenerationRequest("raw", prompt, 1, tokens, ())], greedy)  # type: ignore[attr-defined]
        return time.perf_counter() - started

    for name, extra, goal in (
        ("budget", {"budget": args.budget}, 1.05),
        ("4 budgets", {"budgets": [args.budget * j // 4 for j in range(1, 5)]}, 1.10),
    ):
        _, tokens = ours(**extra)  # warm-up, and the token count the raw engine must match
        raw(tokens)
        ours_s, raw_s = [], []
        for _ in range(args.repeats):
            ours_s.append(ours(**extra)[0])
            raw_s.append(raw(tokens))
        o, r = statistics.median(ours_s), statistics.median(raw_s)
        verdict = "met" if o / r <= goal else "NOT met"
        print(
            f"{name:>10}: ours {o * 1000:7.1f} ms, raw engine {r * 1000:7.1f} ms, {tokens} generated tokens "
            f"(budget {args.budget}, answer ≤ {args.answer_tokens}): ratio {o / r:.3f} "
            f"(goal ≤ {goal:.2f}: {verdict})"
        )


class _serve:
    """uvicorn in a thread on a free port; the base URL."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning"))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


if __name__ == "__main__":
    main()
