"""A byte-level BPE tokenizer trained on synthetic task text, with think tokens, EOS and a chat template.

Digits are split one per token (arithmetic stays learnable); byte-level fallback encodes any text, so
the real math sets also tokenize. `<think>`/`</think>` are added tokens that are *not* special, as in
R1-style models, so decoding keeps them; role markers, EOS and padding are special.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from anytime.summary_format import SummaryFormat

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# The generation prompt opens the thought, so the model's first sampled token is thinking (as R1-Distill).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ '<|endoftext|>' }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n<think>\\n' }}{% endif %}"
)


def build_tokenizer(
    corpus: Iterable[str], vocab_size: int, fmt: SummaryFormat, whole_tokens: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Train the BPE on `corpus` and wrap it for transformers (and therefore vLLM).

    `whole_tokens` are kept as single (non-special) tokens, matched before pre-tokenization.
    """
    special = [EOS, PAD, *ROLE_TOKENS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    plain = (fmt.think_start, fmt.think_end, *whole_tokens)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=2048,
        padding_side="left",
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped
