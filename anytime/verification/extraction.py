"""Answer extraction and the format rule, exactly as docs/method.md §2.4.

The answer is the content of the last `\\boxed{}` (or `\\fbox{}`) inside the first `\\n\\n`-paragraph of
the (inserted + summary) text that begins with the answer heading. Braces are matched, so nested
`\\frac{1}{2}` survives; an unclosed box yields no answer (an earlier closed box in the paragraph is used).

Extraction runs in the verifier's parent process, outside the hard time limit of the grader children, so
it must be linear in the text: one pass matches every brace, and the boxes are looked up in that table
(a 400 KB paragraph of unclosed boxes takes milliseconds, not a quadratic rescan per box).
"""

from __future__ import annotations

from anytime.boxed import last_boxed, matching_braces
from anytime.summary_format import SummaryFormat

__all__ = ["last_boxed", "matching_braces"]  # re-exported: the boxed answer is read here too


def answer_paragraph(response: str, fmt: SummaryFormat) -> str | None:
    """The first paragraph that starts with the answer heading, without the heading; None if absent."""
    heading = fmt.answer_heading
    for paragraph in response.split("\n\n"):
        if paragraph.startswith(heading):
            return paragraph[len(heading) :]
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
