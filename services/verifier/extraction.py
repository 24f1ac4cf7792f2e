"""Answer extraction and the format rule, exactly as DESIGN.md §2.2.

The answer is the content of the last `\\boxed{}` (or `\\fbox{}`) inside the first `\\n\\n`-paragraph of
the (inserted + summary) text that begins with the answer heading. Braces are matched, so nested
`\\frac{1}{2}` survives; an unclosed box yields no answer.
"""

from __future__ import annotations

from anytime.summary_format import SummaryFormat

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def answer_paragraph(response: str, fmt: SummaryFormat) -> str | None:
    """The first paragraph that starts with the answer heading, without the heading; None if absent."""
    heading = fmt.answer_heading
    for paragraph in response.split("\n\n"):
        if paragraph.startswith(heading):
            return paragraph[len(heading) :]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}`/`\\fbox{…}` with matched braces, or None."""
    starts = [(text.rfind(cmd), cmd) for cmd in _BOX_COMMANDS]
    position, command = max(starts)
    while position >= 0:
        content = _braced_after(text, position + len(command))
        if content is not None:
            return content
        # An unclosed last box: fall back to an earlier complete one.
        starts = [(text.rfind(cmd, 0, position), cmd) for cmd in _BOX_COMMANDS]
        position, command = max(starts)
    return None


def _braced_after(text: str, index: int) -> str | None:
    while index < len(text) and text[index] == " ":
        index += 1
    if index >= len(text) or text[index] != "{":
        return None
    depth = 0
    for end in range(index, len(text)):
        char = text[end]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[index + 1 : end]
    return None


def extract_answer(response: str, fmt: SummaryFormat) -> str | None:
    paragraph = answer_paragraph(response, fmt)
    return None if paragraph is None else last_boxed(paragraph)


def is_formatted(thinking_closed: bool, response: str, fmt: SummaryFormat) -> bool:
    """Exactly one think-end across the end of the thinking prefix and the (inserted + summary) text."""
    return int(thinking_closed) + response.count(fmt.think_end) == 1
