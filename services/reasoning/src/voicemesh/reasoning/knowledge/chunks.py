"""Documents -> chunks of about `max_words` words, for retrieval.

A chunk never crosses a Markdown heading: each one keeps the heading path it sits under
("Bella Vista menu > Desserts"). Within a section, text is cut into units (a list item, or a
sentence) and units are packed greedily into chunks of at most `max_words` words; a new
chunk of the same section starts with the last whole sentences of the one before, up to
`overlap_words` words. A single sentence longer than `max_words` is cut into windows of
words. The same input always gives the same chunks.

Wrapped lines are joined back into sentences: a line continues the one before unless it
starts a list item, or the line before ended a sentence or was short (less than
`_SHORT_LINE` of the paragraph's longest line: a list or table row, as in PDF text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .documents import Document

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_SHORT_LINE = 0.6


@dataclass(frozen=True)
class Chunking:
    """How documents are cut: chunks of at most `max_words` words, each overlapping the one
    before by up to `overlap_words` words (whole sentences only)."""

    max_words: int = 120
    overlap_words: int = 20

    def __post_init__(self) -> None:
        if self.max_words < 10:
            raise ValueError(f"max_words must be at least 10, got {self.max_words}")
        if not 0 <= self.overlap_words <= self.max_words // 2:
            raise ValueError(
                f"overlap_words must be from 0 to max_words / 2 ({self.max_words // 2}), got {self.overlap_words}"
            )


@dataclass(frozen=True)
class Chunk:
    """A piece of one document. `id` is "<source>#<n>", n counting the source's chunks
    from 0; `heading` is the heading path above it ("" before the first heading)."""

    id: str
    source: str
    heading: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class _Unit:
    text: str
    words: int
    new_line: bool  # starts a line (a list item, a paragraph) rather than continuing one


def chunk_document(document: Document, chunking: Chunking | None = None) -> list[Chunk]:
    """Cut one document into chunks (an empty list if it has no words)."""
    chunking = chunking or Chunking()
    chunks: list[Chunk] = []
    for heading, lines in _sections(document.text):
        for text in _pack(_units(lines, chunking.max_words, chunking.overlap_words), chunking):
            chunks.append(Chunk(f"{document.source}#{len(chunks)}", document.source, heading, text))
    return chunks


def chunk_documents(documents: list[Document], chunking: Chunking | None = None) -> list[Chunk]:
    return [chunk for document in documents for chunk in chunk_document(document, chunking)]


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading path, the lines under it) for each run of lines between headings."""
    sections: list[tuple[str, list[str]]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    for line in text.split("\n"):
        match = _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        sections.append((" > ".join(t for _, t in path), lines))
        level = len(match.group(1))
        path = [(lv, t) for lv, t in path if lv < level] + [(level, match.group(2))]
        lines = []
    sections.append((" > ".join(t for _, t in path), lines))
    return [(heading, body) for heading, body in sections if any(s.strip() for s in body)]


def _units(lines: list[str], max_words: int, overlap: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph in _paragraphs(lines):
        longest = max(len(line) for line in paragraph)
        pieces: list[str] = []
        previous = ""
        for line in paragraph:
            stripped = line.strip()
            starts = (
                not pieces
                or _LIST_ITEM.match(line) is not None
                or previous.endswith((".", "!", "?", ":"))
                or len(previous) < _SHORT_LINE * longest
            )
            if starts:
                pieces.append(stripped)
            else:
                pieces[-1] += " " + stripped
            previous = stripped
        for piece in pieces:
            for n, sentence in enumerate(_SENTENCE_END.split(piece)):
                units += _split_long(sentence, n == 0, max_words, overlap)
    return units


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def _split_long(sentence: str, new_line: bool, max_words: int, overlap: int) -> list[_Unit]:
    words = sentence.split()
    if len(words) <= max_words:
        return [_Unit(" ".join(words), len(words), new_line)] if words else []
    step = max_words - overlap
    windows = []
    for start in range(0, len(words) - overlap, step):
        piece = words[start : start + max_words]
        windows.append(_Unit(" ".join(piece), len(piece), new_line and start == 0))
    return windows


def _pack(units: list[_Unit], chunking: Chunking) -> list[str]:
    chunks: list[str] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        if current and size + unit.words > chunking.max_words:
            chunks.append(_join(current))
            current = _tail(current, chunking.overlap_words, chunking.max_words - unit.words)
            size = sum(u.words for u in current)
        current.append(unit)
        size += unit.words
    if current:
        chunks.append(_join(current))
    return chunks


def _tail(units: list[_Unit], overlap: int, room: int) -> list[_Unit]:
    """The last whole units of `units` totalling at most min(overlap, room) words."""
    limit = min(overlap, room)
    tail: list[_Unit] = []
    size = 0
    for unit in reversed(units):
        if size + unit.words > limit:
            break
        tail.insert(0, unit)
        size += unit.words
    return tail


def _join(units: list[_Unit]) -> str:
    text = units[0].text
    for unit in units[1:]:
        text += ("\n" if unit.new_line else " ") + unit.text
    return text
