"""Every document the source tree cites exists in the repository, and every section it cites exists in it.

What counts as citing a document (`citations`):
- a path to a `.md` file that starts in a folder of the repository or with `./` / `../`
  (`docs/method.md`, `../docs/architecture.md`), resolved from the repository root or from the citing
  file's folder;
- an upper-case document name, bare or in a path (`README.md`, `DESIGN.md`, `research/PAPER.md`);
- any `name.md` followed by a section sign (`method.md §2.6`), and an upper-case name followed by one
  (`DESIGN §2.2`: a document called by its name);
- a link target in a markdown file (`[text](method.md#anchor)`), resolved from that file's folder.
Lower-case file names without a folder (`report.md`) and absolute paths or URLs are files the code
writes or reads, not citations.

A section citation `X.md §2.3` (also `§2.3–2.5`, `§2.3, §3.1`) must name a numbered heading of X
(`### 2.3 …`); inside docs/method.md a bare `§2.3` refers to the page itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

ROOTS = ("anytime", "anytime_cli", "services", "benchmarks", "tests", "docs", "recipes", "README.md")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ".ini"}
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules", "build"}
METHOD = "docs/method.md"
# Folders a cited path may start in: the top of the repository's source tree.
TOP_FOLDERS = {"anytime", "anytime_cli", "services", "benchmarks", "tests", "docs", "recipes", "migrations"}

# Mentions of a document name that are not citations, each with why; a stale entry fails the test.
NOT_CITATIONS = {
    # The README test asserts that the README does not point at the design notes outside the repository.
    ("tests/unit/cli/test_readme.py", "DESIGN.md"),
}
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()

_SECTION = r"\d+(?:\.\d+)*"
# `§2.3`, `§2.3–2.5`, `§2.3, §3.1`, `§2.3 and §2.5`: a first number, then more, each after `§` or a dash.
_SECTIONS = rf"§(?P<sections>{_SECTION}(?:\s*(?:[–-]\s*§?|,\s*§|\s(?:and|to)\s+§){_SECTION})*)"
_PATH = r"(?<![\w./~\\-])(?P<path>(?:\.{1,2}/|\.?[\w-]+/)*[\w.-]*\w\.md)(?![\w/])"
_PATH_RE = re.compile(rf"{_PATH}(?P<tail>`?\s*{_SECTIONS})?")
_NAMED_RE = re.compile(rf"(?<![\w./-])(?P<name>[A-Z][A-Z0-9_]+)(?:'s)?\s+{_SECTIONS}")
_LINK_RE = re.compile(r"\]\((?P<target>[^)\s#]+\.md)(?:#[^)\s]*)?\)")
_BARE_SECTION_RE = re.compile(rf"(?<![\w.]){_SECTIONS}")
_HEADING_RE = re.compile(rf"^#{{1,6}}\s+§?(?P<number>{_SECTION})\.?\s", re.M)
_UPPER_DOC = re.compile(r"[A-Z][A-Z0-9_-]*\.md")


def headings(text: str) -> set[str]:
    """The numbers of a markdown file's numbered headings (`## 2. …` → "2", `### 2.3 …` → "2.3")."""
    return {m.group("number") for m in _HEADING_RE.finditer(text)}


def cited_sections(sections: str) -> list[str]:
    """`2.3–2.5, §3.1` → ["2.3", "2.5", "3.1"]: every number named (a range by its two ends)."""
    return re.findall(_SECTION, sections)


def _resolve(cited: str, source: Path, root: Path, *, link: bool = False) -> Path | None:
    """The cited file inside the repository, or None. Links resolve from the citing file's folder only."""
    bases = [source.parent] if link else [root, source.parent]
    for base in bases:
        candidate = (base / cited).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    return None


def _is_citation(path: str, has_sections: bool) -> bool:
    first = path.split("/", 1)[0]
    return (
        has_sections
        or ("/" in path and (first in (".", "..") or first in TOP_FOLDERS))
        or bool(_UPPER_DOC.fullmatch(path.rsplit("/", 1)[-1]))
    )


def check_text(text: str, source: Path, root: Path = REPO) -> Iterator[tuple[int, str, str]]:
    """(line, cited document, problem) for every citation in `text` (from file `source`) that fails."""

    def line(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def check_sections(doc: Path, sections: str, pos: int, name: str) -> Iterator[tuple[int, str, str]]:
        known = headings(doc.read_text(encoding="utf-8"))
        for number in cited_sections(sections):
            if number not in known:
                yield line(pos), name, f"cites §{number}, which is not a section heading of {name}"

    cited_spans: list[tuple[int, int]] = []
    for m in _PATH_RE.finditer(text):
        path, tail = m.group("path"), m.group("tail")
        if not _is_citation(path, tail is not None):
            continue
        cited_spans.append(m.span())
        doc = _resolve(path, source, root)
        if doc is None:
            yield line(m.start()), path, f"cites {path}, which is not a file in the repository"
        elif tail is not None:
            yield from check_sections(doc, m.group("sections"), m.start(), path)
    for m in _NAMED_RE.finditer(text):
        name = f"{m.group('name')}.md"
        if _resolve(name, source, root) is None:
            yield line(m.start()), name, f"cites {m.group(0)!r}, and no {name} is in the repository"
    if source.suffix == ".md":
        for m in _LINK_RE.finditer(text):
            target = m.group("target")
            if "://" not in target and _resolve(target, source, root, link=True) is None:
                yield line(m.start()), target, f"links to {target}, which is not a file beside it"
    if source.resolve() == (root / METHOD).resolve():
        for m in _BARE_SECTION_RE.finditer(text):
            if not any(start <= m.start() < end for start, end in cited_spans):
                yield from check_sections(source, m.group("sections"), m.start(), METHOD)


def source_files(root: Path = REPO) -> Iterator[Path]:
    for name in ROOTS:
        top = root / name
        if top.is_file():
            yield top
            continue
        for path in top.rglob("*"):
            if path.suffix in SUFFIXES and path.is_file() and not SKIP_DIRS & set(path.parts):
                yield path


def test_every_cited_document_and_section_exists() -> None:
    problems, allowed_seen = [], set()
    for path in source_files():
        rel = path.relative_to(REPO).as_posix()
        if rel == THIS_FILE:
            continue
        for number, cited, problem in check_text(path.read_text(encoding="utf-8", errors="replace"), path):
            if (rel, cited) in NOT_CITATIONS:
                allowed_seen.add((rel, cited))
            else:
                problems.append(f"{rel}:{number}: {problem}")
    assert not problems, "documents or sections cited but missing:\n" + "\n".join(problems)
    assert allowed_seen == NOT_CITATIONS, f"stale NOT_CITATIONS entries: {NOT_CITATIONS - allowed_seen}"


def test_the_method_page_has_numbered_sections() -> None:
    numbers = headings((REPO / METHOD).read_text(encoding="utf-8"))
    assert {"1", "2", "2.1", "2.10", "3", "4", "5"} <= numbers


# ------------------------------------------------------------------ the scanner on hand-made text

_PY = REPO / "anytime" / "example.py"  # a source file's location (it need not exist)
_DOC = REPO / "docs" / "example.md"


def _found(text: str, source: Path = _PY) -> list[tuple[str, str]]:
    return [(cited, problem.split(",")[0]) for _, cited, problem in check_text(text, source)]


@pytest.mark.parametrize(
    "text",
    [
        "the design (docs/method.md §2.4) and docs/architecture.md",
        "docs/method.md §2.10, §3.1 and docs/method.md §2.5–2.6",
        "see `docs/method.md` §5.4's table",
        "README.md and benchmarks/README.md",
        'Path(out) / "report.md", f"{root}/report.md", "/no/such/folder/r.md", science-report.md',
        "https://github.com/sail-sg/AnytimeReasoner/blob/main/README.md",
        "the authors' (their §3.3) and DESIGN's variant",
    ],
)
def test_what_is_not_a_broken_citation(text: str) -> None:
    assert _found(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("restated from DESIGN.md §2.2", [("DESIGN.md", "cites DESIGN.md")]),
        ("(PAPER.md §3.3)", [("PAPER.md", "cites PAPER.md")]),
        (
            "../shared/research/PAPER.md",
            [("../shared/research/PAPER.md", "cites ../shared/research/PAPER.md")],
        ),
        ("see STYLE.md", [("STYLE.md", "cites STYLE.md")]),
        ("docs/xyz.md", [("docs/xyz.md", "cites docs/xyz.md")]),
        ("scores 0 (DESIGN §2.2)", [("DESIGN.md", "cites 'DESIGN §2.2'")]),
        ("docs/method.md §9.9", [("docs/method.md", "cites §9.9")]),
        ("docs/method.md §2.1–2.99", [("docs/method.md", "cites §2.99")]),
        ("docs/method.md §2.3, §7", [("docs/method.md", "cites §7")]),
    ],
)
def test_what_is_a_broken_citation(text: str, expected: list[tuple[str, str]]) -> None:
    assert _found(text) == expected


def test_markdown_links_resolve_from_their_file() -> None:
    assert _found("[the method](method.md#2-the-algorithm), [results](results/science-report.md)", _DOC) == []
    assert _found("[x](docs/method.md)", _DOC) == [("docs/method.md", "links to docs/method.md")]
    assert _found("method.md §2.6 from docs/", _DOC) == []
    assert _found("method.md §2.6 from anytime/", _PY) == [("method.md", "cites method.md")]


def test_sections_are_parsed_whole() -> None:
    assert cited_sections("2.3–2.5, §3.1") == ["2.3", "2.5", "3.1"]
    assert headings("## 2. The algorithm\n### 2.10 Tree packing\n#### §4.1 x\n# 3 y\ntext 5.1 z") == {
        "2",
        "2.10",
        "4.1",
        "3",
    }
    assert _PATH_RE.search("docs/method.md §2.8, 2 optimizer steps").group("sections") == "2.8"
