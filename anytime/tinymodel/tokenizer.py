"""A byte-level BPE tokenizer trained on synthetic task text, with think tokens, EOS and a chat template.

Digits are split one per token (arithmetic stays learnable); byte-level fallback encodes any text, so
the real math sets also tokenize. `<think>`/`</think>` are added tokens that are *not* special, as in
R1-style models, so decoding keeps them. The chat format (`anytime.tinymodel.chat_formats`) gives the
special tokens and the template: the project's own (`TINY_CHAT`: role markers, EOS and padding special)
or R1-Distill's (`R1_CHAT`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from anytime.summary_format import SummaryFormat
from anytime.tinymodel.chat_formats import TINY_CHAT, ChatFormat


def build_tokenizer(
    corpus: Iterable[str],
    vocab_size: int,
    fmt: SummaryFormat,
    whole_tokens: Sequence[str] = (),
    chat: ChatFormat = TINY_CHAT,
) -> PreTrainedTokenizerFast:
    """Train the BPE on `corpus` and wrap it for transformers (and therefore vLLM).

    `whole_tokens` are kept as single (non-special) tokens, matched before pre-tokenization. With a
    `chat.bos`, encoding with special tokens prepends it (as R1-Distill's tokenizer does).
    """
    special = chat.special_tokens
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
    plain = (fmt.think_start, fmt.think_end, *chat.plain, *whole_tokens)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    if chat.bos is not None:
        bos = (chat.bos, tokenizer.token_to_id(chat.bos))
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{chat.bos} $A", pair=f"{chat.bos} $A {chat.bos} $B", special_tokens=[bos]
        )
    named = {"bos_token": chat.bos} if chat.bos is not None else {}
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=chat.eos,
        pad_token=chat.pad,
        additional_special_tokens=list(chat.special),
        model_max_length=2048,
        padding_side="left",
        **named,
    )
    wrapped.chat_template = chat.template
    return wrapped
