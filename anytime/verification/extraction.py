"""Answer extraction and the format rule, exactly as docs/method.md §2.4.

The answer is the content of the last `\\boxed{}` (or `\\fbox{}`) inside the first `\\n\\n`-paragraph of
the (inserted + summary) text that begins with the answer heading. Braces are matched, so nested
`\\frac{1}{2}` survives; an unclosed box yields no answer (an earlier closed box in the paragraph is used).

Extraction runs in the verifier's parent process, outside the hard time limit of the grader children, so
it must be linear in the text: one pass matches every brace, and the boxes are looked up in that table
(a 400 KB paragraph of unclosed boxes takes milliseconds, not a quadratic rescan per box).
"""

from __future__ import annotations

import re

from anytime.summary_format import SummaryFormat

# A box command, optional spaces, then its opening brace. `\boxedx{` is another command and does not match.
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox) *\{")
# A control symbol (`\{`, `\}`, `\\`, …) is skipped whole: escaped braces are literal, not grouping.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


def answer_paragraph(response: str, fmt: SummaryFormat) -> str | None:
    """The first paragraph that starts with the answer heading, without the heading; None if absent."""
    heading = fmt.answer_heading
    for paragraph in response.split("\n\n"):
        if paragraph.startswith(heading):
            return paragraph[len(heading) :]
    return None


def matching_braces(text: str) -> dict[int, int]:
    """Index of each grouping `{` that is closed → index of its `}` (one pass; unclosed ones left out)."""
    matches: dict[int, int] = {}
    open_at: list[int] = []
    for token in _BRACE_TOKEN.finditer(text):
        char = token.group()
        if char == "{":
            open_at.append(token.start())
        elif char == "}" and open_at:
            matches[open_at.pop()] = token.start()
    return matches


def last_boxed(text: str) -> str | None:
    """Content of the last closed `\\boxed{…}`/`\\fbox{…}` (braces matched), or None."""
    opens = [match.end() - 1 for match in _BOX_OPEN.finditer(text)]
    if not opens:
        return None
    closes = matching_braces(text)
    for brace in reversed(opens):
        end = closes.get(brace)
        if end is not None:
            return text[brace + 1 : end]
    return None


def extract_answer(response: str, fmt: SummaryFormat) -> str | None:
    paragraph = answer_paragraph(response, fmt)
    return None if paragraph is None else last_boxed(paragraph)


def missing_answer_reason(response: str, fmt: SummaryFormat) -> str:
    """Why `extract_answer` found nothing, in words for a verdict's message."""
    if answer_paragraph(response, fmt) is None:
        return f"no paragraph starts with the answer heading {fmt.answer_heading!r}"
    return "no closed \\boxed{} or \\fbox{} in the answer paragraph"


def is_formatted(thinking_closed: bool, response: str, fmt: SummaryFormat) -> bool:
    """Exactly one think-end across the end of the thinking prefix and the (inserted + summary) text."""
    return int(thinking_closed) + response.count(fmt.think_end) == 1
