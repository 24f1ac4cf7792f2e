"""The last `\\boxed{…}` of a text, braces matched: plain Python, so the control plane (the API reading a
MATH-style dataset at the door) and the verifier (`anytime.verification.extraction`) share it without
math-verify."""

from __future__ import annotations

import re

# A box command, optional spaces, then its opening brace. `\boxedx{` is another command and does not match.
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox) *\{")
# A control symbol (`\{`, `\}`, `\\`, …) is skipped whole: escaped braces are literal, not grouping.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)


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
