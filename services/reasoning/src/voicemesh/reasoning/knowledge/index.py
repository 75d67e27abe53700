"""`KnowledgeIndex`: an agent's knowledge, chunked and indexed once when the agent loads,
searched with the caller's latest transcript at every turn.

    index = KnowledgeIndex.from_files(["menu.md", "prices.pdf"], {"hours": "Open daily ..."})
    hits = index.search("do you have vegan dishes", k=3)

Retrieval is BM25 over the chunk's heading and text (lexical.py), chosen by measurement
(bench/retrieval.py, one core, 10,000 chunks): p99 1-6 ms, built in 1-2 s, 5 MB, recall@3
94% on the sample question set. all-MiniLM-L6-v2 embeddings (onnxruntime, int8) fused with
BM25 reached 100%, but cost a 5-10 ms query embedding, 440 s to embed 10,000 chunks, 270 MB
per process, and a model the project cannot ship without torch (the PyPI package needs
sentence-transformers, the ONNX export needs torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from voicemesh.agent import Agent

from .chunks import Chunk, Chunking, chunk_documents
from .documents import Document, load_sources, read_documents
from .lexical import Analyzer, Bm25, top_k


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk and its BM25 score (higher is better; comparable only within
    one search)."""

    chunk: Chunk
    score: float

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def source(self) -> str:
        return self.chunk.source

    @property
    def heading(self) -> str:
        return self.chunk.heading


class KnowledgeIndex:
    """A read-only index over chunks; `search` is safe to call from several threads."""

    def __init__(self, chunks: Sequence[Chunk], analyzer: Analyzer | None = None) -> None:
        seen: set[str] = set()
        for chunk in chunks:
            if chunk.id in seen:
                raise ValueError(f"two chunks have the id {chunk.id!r}")
            seen.add(chunk.id)
        self._chunks = tuple(chunks)
        self._analyzer = analyzer or Analyzer()
        self._bm25 = Bm25([self._analyzer(f"{c.heading}\n{c.text}") for c in self._chunks])

    @classmethod
    def build(cls, chunks: Sequence[Chunk], analyzer: Analyzer | None = None) -> KnowledgeIndex:
        return cls(chunks, analyzer)

    @classmethod
    def from_documents(
        cls, documents: Sequence[Document], chunking: Chunking | None = None
    ) -> KnowledgeIndex:
        return cls(chunk_documents(list(documents), chunking))

    @classmethod
    def from_files(
        cls,
        paths: Sequence[str | Path],
        inline_texts: Mapping[str, str] | None = None,
        chunking: Chunking | None = None,
    ) -> KnowledgeIndex:
        """Files named by their path, inline texts by their key. Raises KnowledgeFileError
        (a ValueError naming the file) for a file that cannot be used."""
        return cls.from_documents(read_documents(paths, inline_texts), chunking)

    @classmethod
    def for_agent(
        cls, agent: Agent, base_dir: str | Path, chunking: Chunking | None = None
    ) -> KnowledgeIndex:
        """The index of an agent's `knowledge` list (paths relative to `base_dir`)."""
        return cls.from_documents(load_sources(agent, base_dir), chunking)

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return self._chunks

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def nbytes(self) -> int:
        """Bytes in the postings arrays (not the chunk texts or the vocabulary)."""
        return self._bm25.nbytes

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The up to `k` chunks that best match `query`, best first (ties in chunk order).
        Chunks sharing no term with the query are never returned, so a query of only stop
        words ("um, yeah") gives no hits."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        scores = self._bm25.scores(self._analyzer(query))
        return [Hit(self._chunks[i], float(scores[i])) for i in top_k(scores, k)]
