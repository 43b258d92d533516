"""Passages: the plain data that flows between stages.

A :class:`Passage` is a text and where it comes from; a :class:`Chunk` is a
passage as ingest cut it out of a file's page, with its character offsets in
that page. Retrieval returns chunks, the prompt numbers passages, and training
builds passages of its own: none of them needs the index or a retriever type.

    >>> Chunk("The ferry leaves at nine.", "/docs/ferry.md", None, start=120, end=145).text
    'The ferry leaves at nine.'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    text: str
    source: str | None = None  # the file (absolute path for indexed chunks) or a title
    page: int | None = None  # 1-based PDF page; None for formats without pages


@dataclass(frozen=True)
class Chunk(Passage):
    """A passage of a file, as chunked at ingest and stored in the docstore."""

    start: int = 0  # character offsets of ``text`` within its page
    end: int = 0
    language: str = "en"  # detected at ingest (rag.language); BM25 analyzes the chunk in it
