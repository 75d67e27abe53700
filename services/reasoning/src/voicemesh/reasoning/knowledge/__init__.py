"""Retrieval (RAG) over an agent's knowledge files: Markdown, plain text and PDF are read
(documents.py), cut into heading-aware chunks (chunks.py) and indexed with BM25
(lexical.py, index.py) when the agent loads; each caller turn searches the index.

    from voicemesh.reasoning.knowledge import KnowledgeIndex, load_sources
    index = KnowledgeIndex.build(chunk_documents(load_sources(agent, agent_dir)))
    hits = index.search("do you have vegan dishes", k=3)   # [Hit(chunk, score), ...]
"""

from __future__ import annotations

from .chunks import Chunk, Chunking, chunk_document, chunk_documents
from .documents import (
    SUPPORTED_SUFFIXES,
    Document,
    KnowledgeFileError,
    load_sources,
    read_document,
    read_documents,
    text_document,
)
from .index import Hit, KnowledgeIndex
from .lexical import Analyzer, Bm25, stem, top_k

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Analyzer",
    "Bm25",
    "Chunk",
    "Chunking",
    "Document",
    "Hit",
    "KnowledgeFileError",
    "KnowledgeIndex",
    "chunk_document",
    "chunk_documents",
    "load_sources",
    "read_document",
    "read_documents",
    "stem",
    "text_document",
    "top_k",
]
