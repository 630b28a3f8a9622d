"""The project's documentation as the tests read it: the README and docs/*.md, their
fenced code blocks, links and headings, so every example is run wherever it lives."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DOCS", "README", "ROOT", "CodeBlock", "anchors", "code_blocks", "links"]

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
# Every page an example may live on: the front door, then the reference in docs/.
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```([\w+-]*)\n(.*?)^```$", re.S | re.M)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: the page it is on, its language tag and its text."""

    path: Path
    language: str
    text: str


def code_blocks(language: str, pages: list[Path] | None = None) -> list[CodeBlock]:
    """The ``language`` blocks of ``pages`` (default: the README and docs/), in order."""
    return [
        CodeBlock(path, match[1], match[2])
        for path in pages or DOCS
        for match in _FENCE.finditer(path.read_text())
        if match[1] == language
    ]


def _prose(text: str) -> str:
    """``text`` without its fenced blocks, whose brackets and hashes are code."""
    return _FENCE.sub("", text)


def links(path: Path) -> list[str]:
    """Every link target written in ``path``'s prose."""
    return _LINK.findall(_prose(path.read_text()))


def anchors(path: Path) -> set[str]:
    """The fragment ids GitHub gives ``path``'s headings: lower case, punctuation
    dropped, spaces as hyphens; a repeated heading gets ``-1``, ``-2``, ..."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in _HEADING.findall(_prose(path.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out
