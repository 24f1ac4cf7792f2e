"""Chat formats the tiny tokenizer can be built with: its own (`TINY_CHAT`) or R1-Distill's (`R1_CHAT`).

A format is the tokenizer's special tokens and chat template, nothing else: the BPE is trained on the same
corpus either way. `R1_CHAT` lets the CPU exercise prompts, cuts and inserted text as
DeepSeek-R1-Distill-Qwen sees them (docs/method.md §5.1, §2.3): a user turn renders as
`<｜begin▁of▁sentence｜><｜User｜>{content}<｜Assistant｜><think>\\n`, so the model thinks right after the
generation prompt; EOS (and padding) is `<｜end▁of▁sentence｜>`. As in that tokenizer, the begin and end of
sentence are special tokens and the role markers and `<think>`/`</think>` are atomic tokens that decoding
keeps; encoding with special tokens prepends the BOS, which is why prompts (`anytime.prompting`) and
inserted strings (`anytime.model_facts`) are encoded without them: the template writes the one BOS.

The R1 template renders system, user and assistant turns as the model's own does (the system text first,
after the BOS; an assistant turn keeps what follows its last `</think>` and ends with EOS); its tool-call
turns are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChatFormatName = Literal["tiny", "r1"]


@dataclass(frozen=True)
class ChatFormat:
    """The special tokens and the chat template of a tokenizer.

    `special` are skipped when decoding with `skip_special_tokens`; `plain` are single tokens decoding
    keeps. `bos` (when set) is what encoding with special tokens prepends.
    """

    name: ChatFormatName
    eos: str
    pad: str
    bos: str | None
    special: tuple[str, ...]
    plain: tuple[str, ...]
    template: str

    @property
    def special_tokens(self) -> list[str]:
        """Every special token once, EOS first (the order gives the ids)."""
        return list(dict.fromkeys(t for t in (self.eos, self.pad, self.bos, *self.special) if t is not None))


# The project's own format: role markers on their own lines; the generation prompt opens the thought.
TINY_CHAT = ChatFormat(
    name="tiny",
    eos="<|endoftext|>",
    pad="<|pad|>",
    bos=None,
    special=("<|system|>", "<|user|>", "<|assistant|>"),
    plain=(),
    template=(
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
        "{% if message['role'] == 'assistant' %}{{ '<|endoftext|>' }}{% endif %}"
        "{{ '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n<think>\\n' }}{% endif %}"
    ),
)

R1_BOS = "<｜begin▁of▁sentence｜>"
R1_EOS = "<｜end▁of▁sentence｜>"
R1_USER = "<｜User｜>"
R1_ASSISTANT = "<｜Assistant｜>"

R1_CHAT = ChatFormat(
    name="r1",
    eos=R1_EOS,
    pad=R1_EOS,  # R1-Distill pads with its EOS
    bos=R1_BOS,
    special=(),
    plain=(R1_USER, R1_ASSISTANT),
    template=(
        "{%- set system = namespace(text='') -%}"
        "{%- for message in messages if message['role'] == 'system' -%}"
        "{%- set system.text = message['content'] -%}"
        "{%- endfor -%}"
        "{{ bos_token }}{{ system.text }}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{ '<｜User｜>' + message['content'] }}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{ '<｜Assistant｜>' + message['content'].split('</think>')[-1] + eos_token }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<｜Assistant｜><think>\\n' }}{%- endif -%}"
    ),
)

CHAT_FORMATS: dict[ChatFormatName, ChatFormat] = {"tiny": TINY_CHAT, "r1": R1_CHAT}
