"""A generation engine on Hugging Face transformers with its own decode loop (CPU, tests, small models).

Why its own loop rather than `generate`: it prefills each distinct prompt once, lets that prompt's `n`
samples read one copy of its KV (a summary prompt's `k·A` samples share the whole thinking prefix: see
`services.engines.shared_prefix`; `shared_prefix=False` copies it into every row instead), drops finished
rows from the batch as it goes, and records the raw log-prob of every sampled token.

Rows keep their request order on both paths, so the sampler draws its random numbers in the same order:
the same seed gives the same samples with or without sharing (up to float rounding at a sampling boundary).

Scheduling is by waves: a wave runs every pending request to the end; the follow-ups of its requests form
the next wave (vLLM instead adds them to its running batch, see `services.engines.vllm_engine`).
Weights are updated in place with `load_state_dict`, so a new policy costs no restart.

Kept KV (the transformers engine's stand-in for vLLM's prefix cache): the KV of a request marked `keep_kv`
(prompt + sample, the last sampled token aside) is held across `generate` calls (`KeptKV`), and a prompt
that starts with a held sequence prefills only the rest, attending to the held KV cropped to the common
prefix. The inference API marks its thinking segments, so the next segment and every answer cut from the
thought cost their own new tokens, not a re-prefill of prompt + thought. Requests without the mark (the
rollout's) find nothing held unless something marked ran on the same engine.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import DynamicLayer

from anytime.contracts.sampling import SamplingConfig
from anytime.model_facts import ModelFacts
from anytime.summary_format import SummaryFormat
from services.engines.seam import (
    DEFAULT_MAX_ROWS,
    FollowUp,
    GenerationRequest,
    Sample,
    SampleFinish,
    check_unique_keys,
)
from services.engines.shared_prefix import PromptKV, SharedPrefix, enable_shared_prefix_attention, padded_runs

# Tokens of KV held for `keep_kv` requests (all sequences together) before the least recently used go.
DEFAULT_KEPT_KV_TOKENS = 32768


class TransformersEngine:
    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        facts: ModelFacts,
        policy_version: int = 0,
        max_rows: int = DEFAULT_MAX_ROWS,
        shared_prefix: bool = True,
        kept_kv_tokens: int = DEFAULT_KEPT_KV_TOKENS,
    ) -> None:
        """`shared_prefix=False` keeps the per-row copy of the prompt KV (for comparison and benchmarks).

        With `shared_prefix` the model is switched to the shared-prefix attention function, which runs
        sdpa on every call but this engine's decode steps (see `services.engines.shared_prefix`).
        `kept_kv_tokens`: the most tokens of KV held for `keep_kv` requests (0: none; every prompt is
        prefilled whole).
        """
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1; got {max_rows}")
        if kept_kv_tokens < 0:
            raise ValueError(f"kept_kv_tokens must be >= 0; got {kept_kv_tokens}")
        if shared_prefix:
            enable_shared_prefix_attention(model)
        self.model = model
        self.tokenizer = tokenizer
        self.facts = facts
        self.max_rows = max_rows
        self.shared_prefix = shared_prefix
        self.kept = KeptKV(kept_kv_tokens)
        self._policy_version = policy_version

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, fmt: SummaryFormat | None = None, policy_version: int = 0, **kwargs: Any
    ) -> TransformersEngine:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        facts = ModelFacts.from_tokenizer(tokenizer, fmt or SummaryFormat())
        return cls(model.eval(), tokenizer, facts, policy_version=policy_version, **kwargs)

    @property
    def policy_version(self) -> int:
        return self._policy_version

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def load_weights(self, model_dir: Path, policy_version: int) -> None:
        """Copy the weights of `model_dir` into the served model (same architecture required)."""
        new = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        missing, unexpected = self.model.load_state_dict(new.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{model_dir} does not fit the served model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}; start a new engine for a different architecture"
            )
        self.kept.clear()  # KV of the old weights
        self._policy_version = policy_version

    def close(self) -> None:
        """Nothing to release: the model lives in this process."""

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingConfig,
        follow_up: FollowUp | None = None,
        seed: int = 0,
    ) -> dict[str, list[Sample]]:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        seen: set[str] = set()
        check_unique_keys(requests, seen)
        results: dict[str, list[Sample]] = {}
        pending = list(requests)
        was_training = self.model.training
        self.model.eval()
        try:
            while pending:
                wave, pending = pending, []
                for chunk in self._chunks(wave):
                    samples = self._run(chunk, sampling, generator)
                    for request in chunk:
                        results[request.key] = samples[request.key]
                        if follow_up is not None:
                            more = list(follow_up(request, samples[request.key]))
                            check_unique_keys(more, seen)
                            pending.extend(more)
        finally:
            self.model.train(was_training)
        return results

    def _chunks(self, requests: Sequence[GenerationRequest]) -> Iterator[list[GenerationRequest]]:
        chunk: list[GenerationRequest] = []
        rows = 0
        for request in requests:
            if chunk and rows + request.n > self.max_rows:
                yield chunk
                chunk, rows = [], 0
            chunk.append(request)
            rows += request.n
        if chunk:
            yield chunk

    @torch.inference_mode()
    def _run(
        self, requests: Sequence[GenerationRequest], sampling: SamplingConfig, generator: torch.Generator
    ) -> dict[str, list[Sample]]:
        device = self.device
        # Row r of the decode batch is sample `r - first row of owner[r]` of request `owner[r]`.
        owner = [i for i, req in enumerate(requests) for _ in range(req.n)]
        logits, decoder = self._prefill(requests)
        max_tokens = torch.tensor([requests[o].max_tokens for o in owner], device=device)
        stop_width = max(1, max(len(r.stop_ids) for r in requests))
        stops = torch.full((len(owner), stop_width), -1, dtype=torch.long, device=device)
        for row, o in enumerate(owner):
            if requests[o].stop_ids:
                stops[row, : len(requests[o].stop_ids)] = torch.tensor(requests[o].stop_ids)

        rows = len(owner)
        ids: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        stopped = [False] * rows
        keep_kv = [requests[o].keep_kv and self.kept.max_tokens > 0 for o in owner]
        keeps_any = any(keep_kv)
        alive = torch.arange(rows, device=device)
        length = torch.zeros(rows, dtype=torch.long, device=device)
        while True:
            token, token_logprob = self._sample(logits, sampling, generator)
            for row, tok, lp in zip(alive.tolist(), token.tolist(), token_logprob.tolist(), strict=True):
                ids[row].append(tok)
                logprobs[row].append(lp)
            length += 1
            hit_stop = (stops == token[:, None]).any(-1)
            done = hit_stop | (length >= max_tokens)
            for row in alive[hit_stop].tolist():
                stopped[row] = True
            if keeps_any:
                self._keep_finished(requests, owner, ids, keep_kv, alive, done, decoder)
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(-1)
                decoder.keep(keep)
                alive, token = alive[keep], token[keep]
                length, max_tokens, stops = length[keep], max_tokens[keep], stops[keep]
            logits = decoder.step(token)

        samples: dict[str, list[Sample]] = {req.key: [] for req in requests}
        for row, o in enumerate(owner):
            finish: SampleFinish = "stop" if stopped[row] else "length"
            samples[requests[o].key].append(Sample(tuple(ids[row]), tuple(logprobs[row]), finish))
        return samples

    def _keep_finished(
        self,
        requests: Sequence[GenerationRequest],
        owner: list[int],
        ids: list[list[int]],
        keep_kv: list[bool],
        alive: torch.Tensor,
        done: torch.Tensor,
        decoder: _Decoder,
    ) -> None:
        """Hold the KV of the rows that finish now and asked for it: their prompt and every sampled token
        but the last (never fed). `alive` [A]: the live rows' numbers; `done` [A]: which finish."""
        for position in done.nonzero().squeeze(-1).tolist():
            row = int(alive[position])
            if keep_kv[row]:
                fed = (*requests[owner[row]].prompt_ids, *ids[row][:-1])
                self.kept.put(KeptSequence(fed, *decoder.row_kv(position)))

    def _prefill(self, requests: Sequence[GenerationRequest]) -> tuple[torch.Tensor, _Decoder]:
        """One prefill row per distinct prompt (G thinking requests of a problem share theirs).

        Returns the first logits of every decode row [R, V] (rows in request order, `n` per request) and
        the decoder that continues them. The prompt KV is kept once, apart from the rows' own tokens, when
        the copies of it that rows would add outweigh what the rows generate (summaries: `k·A` rows of a
        long thinking prefix, at most `summary_max_tokens` new tokens each): per-row copies would duplicate
        it `n` times and copy it again at every step. Otherwise (thinking: a short prompt, a long
        generation; or one row per prompt, as in inference, where there is nothing to share) copies cost
        little and skip the two-part attention's fixed per-step work.
        """
        rows_of: dict[tuple[int, ...], int] = {}
        for request in requests:
            rows_of[request.prompt_ids] = rows_of.get(request.prompt_ids, 0) + request.n
        copied_tokens = sum(len(prompt) * (n - 1) for prompt, n in rows_of.items())
        generated = sum(rows_of.values()) * max(r.max_tokens for r in requests)
        if self.shared_prefix and copied_tokens > generated:
            return self._prefill_shared(requests, rows_of)
        return self._prefill_copied(requests, list(rows_of))

    def _prefill_copied(
        self, requests: Sequence[GenerationRequest], prompts: list[tuple[int, ...]]
    ) -> tuple[torch.Tensor, _Decoder]:
        logits, cache, mask, last = self._forward_prompts(prompts)
        number = {prompt: i for i, prompt in enumerate(prompts)}
        index = torch.tensor([number[r.prompt_ids] for r in requests for _ in range(r.n)], device=self.device)
        decoder = _CopiedPrefixDecoder(self.model, cache, mask, index, last.index_select(0, index) + 1)
        return logits.index_select(0, index), decoder

    def _prefill_shared(
        self, requests: Sequence[GenerationRequest], rows_of: dict[tuple[int, ...], int]
    ) -> tuple[torch.Tensor, _Decoder]:
        # Longest first, in groups of similar length (little padding); in a group, most rows first.
        by_length = sorted(rows_of, key=len, reverse=True)
        groups = [
            sorted(by_length[start:stop], key=lambda p: -rows_of[p])
            for start, stop, _ in padded_runs([len(p) for p in by_length])
        ]
        where: dict[tuple[int, ...], tuple[int, int]] = {}
        kv, first_row, group_logits, group_last = [], [0], [], []
        for g, prompts in enumerate(groups):
            logits, cache, mask, last = self._forward_prompts(prompts)
            layers = _layer_kv(cache)
            kv.append(PromptKV.from_prefill(tuple(k for k, _ in layers), tuple(v for _, v in layers), mask))
            group_logits.append(logits)
            group_last.append(last)
            first_row.append(first_row[-1] + len(prompts))
            where.update({prompt: (g, i) for i, prompt in enumerate(prompts)})
        prompt_of_row = tuple(where[r.prompt_ids] for r in requests for _ in range(r.n))
        index = torch.tensor([first_row[g] + i for g, i in prompt_of_row], device=self.device)
        next_position = torch.cat(group_last).index_select(0, index) + 1
        decoder = _SharedPrefixDecoder(
            self.model, SharedPrefix.build(tuple(kv), prompt_of_row), next_position
        )
        return torch.cat(group_logits).index_select(0, index), decoder

    def _forward_prompts(
        self, prompts: Sequence[tuple[int, ...]]
    ) -> tuple[torch.Tensor, DynamicCache, torch.Tensor, torch.Tensor]:
        """Prefill `prompts`: last logits [P, V], the cache (width W), the padding mask [P, W] (1 = prompt
        token) and the last prompt token's position [P]. Prompts that start with a kept sequence prefill
        only the rest (`_forward_extensions`); the others are left-padded to one width."""
        held = [self.kept.match(prompt) for prompt in prompts]
        if any(sequence is not None for _, sequence in held):
            return self._forward_extensions(prompts, held)
        return self._forward_whole(prompts)

    def _forward_whole(
        self, prompts: Sequence[tuple[int, ...]]
    ) -> tuple[torch.Tensor, DynamicCache, torch.Tensor, torch.Tensor]:
        device = self.device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.facts.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
        mask = mask.to(device)
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :], out.past_key_values, mask, positions[:, -1]

    def _forward_extensions(
        self, prompts: Sequence[tuple[int, ...]], held: Sequence[tuple[int, KeptSequence | None]]
    ) -> tuple[torch.Tensor, DynamicCache, torch.Tensor, torch.Tensor]:
        """Prefill only what each prompt adds to its kept sequence, attending to that sequence's KV cropped
        to the common prefix. Row p of the cache is `[pad | held_p | pad | rest_p]`, width W = H + E (H the
        longest held part, E the longest rest); the mask marks both real parts, positions run on."""
        device = self.device
        width_held = max(length for length, _ in held)
        width_rest = max(len(prompt) - length for prompt, (length, _) in zip(prompts, held, strict=True))
        template = next(sequence for _, sequence in held if sequence is not None)
        past = [
            (
                k.new_zeros((len(prompts), k.shape[0], width_held, k.shape[-1])),
                v.new_zeros((len(prompts), v.shape[0], width_held, v.shape[-1])),
            )
            for k, v in zip(template.keys, template.values, strict=True)
        ]
        input_ids = torch.full((len(prompts), width_rest), self.facts.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width_held + width_rest), dtype=torch.long)
        positions = torch.zeros((len(prompts), width_rest), dtype=torch.long)
        for row, (prompt, (length, sequence)) in enumerate(zip(prompts, held, strict=True)):
            rest = prompt[length:]
            if sequence is not None:
                for (keys, values), kept_keys, kept_values in zip(
                    past, sequence.keys, sequence.values, strict=True
                ):
                    keys[row, :, width_held - length :] = kept_keys[:, :length]
                    values[row, :, width_held - length :] = kept_values[:, :length]
                mask[row, width_held - length : width_held] = 1
            input_ids[row, width_rest - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            mask[row, width_held + width_rest - len(rest) :] = 1
            positions[row, width_rest - len(rest) :] = torch.arange(length, len(prompt))
        mask, positions = mask.to(device), positions.to(device)
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(ddp_cache_data=past),
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :], out.past_key_values, mask, positions[:, -1]

    @staticmethod
    def _sample(
        logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token per row and its log-prob under the unmodified model. Shapes [R, V] → [R]."""
        raw = torch.log_softmax(logits.float(), dim=-1)
        if sampling.greedy:
            token = raw.argmax(dim=-1)
        else:
            scores = logits.float() / sampling.temperature
            if sampling.top_k > 0 and sampling.top_k < scores.shape[-1]:
                kth = scores.topk(sampling.top_k, dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            if sampling.top_p < 1.0:
                sorted_scores, order = scores.sort(dim=-1, descending=True)
                cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
                drop_sorted = cumulative - sorted_scores.softmax(dim=-1) >= sampling.top_p
                drop = drop_sorted.scatter(-1, order, drop_sorted)
                scores = scores.masked_fill(drop, float("-inf"))
            probs = scores.softmax(dim=-1)
            token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        return token, raw.gather(-1, token[:, None]).squeeze(-1)


class _Decoder(Protocol):
    """The decode rows' KV after the prefill: one step feeds each live row's last token."""

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Next-token logits [R, V] of the live rows, given their last tokens [R]."""
        ...

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the live rows `rows` (indices into the current rows, in order)."""
        ...

    def cached_elements(self) -> tuple[int, int]:
        """Elements of KV held (all layers, keys and values): (prompt part, generated part)."""
        ...

    def row_kv(self, row: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """A copy of live row `row`'s KV, padding left out: per layer keys and values [Hkv, L, D]."""
        ...


class _CopiedPrefixDecoder:
    """Every row owns a copy of its prompt's KV: rows × prompt in memory, copied again at every step."""

    def __init__(
        self,
        model: torch.nn.Module,
        cache: DynamicCache,
        mask: torch.Tensor,
        index: torch.Tensor,
        next_position: torch.Tensor,
    ) -> None:
        cache.batch_select_indices(index)
        self.model, self.cache, self.mask = model, cache, mask.index_select(0, index)
        self.prompt_width, self.next_position = mask.shape[1], next_position

    def step(self, token: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        out = self.model(
            input_ids=token[:, None],
            attention_mask=self.mask,
            position_ids=self.next_position[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.next_position = self.next_position + 1
        return out.logits[:, -1, :]

    def keep(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask, self.next_position = self.mask[rows], self.next_position[rows]

    def cached_elements(self) -> tuple[int, int]:
        held = sum(k.numel() + v.numel() for k, v in _layer_kv(self.cache))
        generated = held * (self.mask.shape[1] - self.prompt_width) // self.mask.shape[1]
        return held - generated, generated

    def row_kv(self, row: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        real = self.mask[row].nonzero().squeeze(-1)
        layers = _layer_kv(self.cache)
        return (
            tuple(k[row].index_select(-2, real) for k, _ in layers),
            tuple(v[row].index_select(-2, real) for _, v in layers),
        )


class _SharedPrefixDecoder:
    """Each distinct prompt's KV once (`SharedPrefix`); a `DynamicCache` holds only the rows' own tokens."""

    def __init__(self, model: torch.nn.Module, prefix: SharedPrefix, next_position: torch.Tensor) -> None:
        self.model, self.prefix, self.next_position = model, prefix, next_position
        self.suffix = DynamicCache()

    def step(self, token: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=token[:, None],
            position_ids=self.next_position[:, None],
            past_key_values=self.suffix,
            use_cache=True,
            shared_prefix=self.prefix,
        )
        self.next_position = self.next_position + 1
        return out.logits[:, -1, :]

    def keep(self, rows: torch.Tensor) -> None:
        self.suffix.batch_select_indices(rows)
        self.prefix = self.prefix.select_rows(rows.tolist())
        self.next_position = self.next_position[rows]

    def cached_elements(self) -> tuple[int, int]:
        generated = sum(k.numel() + v.numel() for k, v in _layer_kv(self.suffix))
        return self.prefix.cached_elements(), generated

    def row_kv(self, row: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        group, prompt = self.prefix.prompt_of_row[row]
        kv = self.prefix.groups[group]
        real = (kv.key_bias[prompt, 0, 0] == 0).nonzero().squeeze(-1)
        keys = [k[prompt].index_select(-2, real) for k in kv.keys]
        values = [v[prompt].index_select(-2, real) for v in kv.values]
        if self.suffix.get_seq_length() > 0:  # no suffix before the first step
            for layer, (k, v) in enumerate(_layer_kv(self.suffix)):
                keys[layer] = torch.cat([keys[layer], k[row]], dim=-2)
                values[layer] = torch.cat([values[layer], v[row]], dim=-2)
        return tuple(keys), tuple(values)


def _layer_kv(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values), each [B, Hkv, L, D], of a dynamic cache that has seen a forward."""
    kv = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise TypeError(f"expected initialised full-attention cache layers; got {type(layer).__name__}")
        kv.append((layer.keys, layer.values))
    return kv


@dataclass(frozen=True)
class KeptSequence:
    """The KV of `ids` (every layer's keys and values [Hkv, L, D], L = len(ids)), kept for later prompts."""

    ids: tuple[int, ...]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        if any(k.shape[-2] != len(self.ids) for k in self.keys):
            raise ValueError(f"kept KV of {self.keys[0].shape[-2]} tokens for {len(self.ids)} ids")


class KeptKV:
    """The KV of `keep_kv` requests' sequences across `generate` calls, at most `max_tokens` tokens in all.

    `match` finds the held sequence that shares the longest prefix with a prompt (at most all but the
    prompt's last token, whose logits the prefill must compute). A sequence that extends a held one replaces
    it (a thought sampled in segments is held once, its latest segment); the least recently used go first.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._held: OrderedDict[tuple[int, ...], KeptSequence] = OrderedDict()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._held)

    def put(self, sequence: KeptSequence) -> None:
        ids = sequence.ids
        if not ids or len(ids) > self.max_tokens:
            return
        for held in [h for h in self._held if len(h) <= len(ids) and ids[: len(h)] == h]:
            self._drop(held)  # the new sequence holds its KV too
        if any(len(h) > len(ids) and h[: len(ids)] == ids for h in self._held):
            return  # already held inside a longer one
        self._held[ids] = sequence
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            self._drop(next(iter(self._held)))

    def match(self, prompt: tuple[int, ...]) -> tuple[int, KeptSequence | None]:
        """(tokens of `prompt` whose KV is held, the sequence holding them), or (0, None)."""
        best, found = 0, None
        for ids, sequence in self._held.items():
            length = _common_prefix(ids, prompt[:-1])
            if length > best:
                best, found = length, sequence
        if found is not None:
            self._held.move_to_end(found.ids)
        return best, found

    def clear(self) -> None:
        self._held.clear()
        self.tokens = 0

    def _drop(self, ids: tuple[int, ...]) -> None:
        del self._held[ids]
        self.tokens -= len(ids)


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Length of the longest common prefix of `a` and `b` (bisection over slice comparisons, done in C)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while high - low > 1:  # a[:low] == b[:low], a[:high] != b[:high]
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low
