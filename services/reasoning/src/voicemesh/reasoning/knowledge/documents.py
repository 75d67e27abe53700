"""Knowledge files -> text: Markdown and plain text as written, PDF through pypdf.

Every problem a user can cause (a missing file, an unsupported type, a file that is not
UTF-8, a PDF that is corrupt, encrypted or has no text, a file with nothing in it) raises
`KnowledgeFileError`, a ValueError whose message names the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from voicemesh.agent import Agent

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + PDF_SUFFIXES


class KnowledgeFileError(ValueError):
    """A knowledge source that cannot be used. `str()` names the source and what is wrong."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"knowledge file {source!r}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class Document:
    """One knowledge source as text. `source` names it in hits and in the prompt: the
    entry's `name`, else the path as the agent file wrote it."""

    source: str
    text: str


def read_document(path: str | Path, source: str | None = None) -> Document:
    """Read one .md / .markdown / .txt / .pdf file."""
    path = Path(path)
    name = source if source is not None else str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise KnowledgeFileError(
            name, f"unsupported file type {suffix or '(none)'!r}: use {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.exists():
        raise KnowledgeFileError(name, "no such file")
    if not path.is_file():
        raise KnowledgeFileError(name, "not a file")
    text = _read_pdf(path, name) if suffix in PDF_SUFFIXES else _read_text(path, name)
    return text_document(text, name)


def text_document(text: str, source: str) -> Document:
    """Inline text (or text read elsewhere) as a document; line endings normalised."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if not text.strip():
        raise KnowledgeFileError(source, "has no text")
    return Document(source=source, text=text)


def read_documents(
    paths: Sequence[str | Path], inline_texts: Mapping[str, str] | None = None
) -> list[Document]:
    """Files (named by their path) then inline texts (named by their key), in order."""
    documents = [read_document(p) for p in paths]
    documents += [text_document(text, name) for name, text in (inline_texts or {}).items()]
    _check_unique([d.source for d in documents])
    return documents


def load_sources(agent: Agent, base_dir: str | Path) -> list[Document]:
    """The documents of an agent's `knowledge` list. A `path` is relative to `base_dir`
    (the agent file's folder); an entry without `name` is named by its path, or
    "knowledge N" (N counting entries from 1) for inline text."""
    base = Path(base_dir)
    documents: list[Document] = []
    for number, entry in enumerate(agent.knowledge, 1):
        if entry.path is not None and entry.text is None:
            path = Path(entry.path)
            full = path if path.is_absolute() else base / path
            documents.append(read_document(full, entry.name or entry.path))
        elif entry.text is not None and entry.path is None:
            documents.append(text_document(entry.text, entry.name or f"knowledge {number}"))
        else:
            name = entry.name or entry.path or f"knowledge {number}"
            raise KnowledgeFileError(name, "needs exactly one of `path` (a file) or `text`")
    _check_unique([d.source for d in documents])
    return documents


def _read_text(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise KnowledgeFileError(name, "not UTF-8 text") from None
    except OSError as exc:
        raise KnowledgeFileError(name, f"cannot read: {exc.strerror}") from None


def _read_pdf(path: Path, name: str) -> str:
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise KnowledgeFileError(name, "the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except KnowledgeFileError:
        raise
    except OSError as exc:
        raise KnowledgeFileError(name, f"cannot read: {exc.strerror}") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pypdf raises more than PdfReadError on damaged files.
        raise KnowledgeFileError(name, f"not a readable PDF ({type(exc).__name__})") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise KnowledgeFileError(name, "the PDF has no text to extract (a scanned image?)")
    return text


def _check_unique(sources: list[str]) -> None:
    seen: set[str] = set()
    for source in sources:
        if source in seen:
            raise KnowledgeFileError(source, "two knowledge sources have this name")
        seen.add(source)
