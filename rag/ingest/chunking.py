"""Split pages into overlapping chunks measured in the embedder's own tokens.

langchain-text-splitters' recursive splitter cuts on paragraph, then line,
then sentence, then word boundaries, so a chunk rarely stops mid-sentence; its
length function is the embedder's tokenizer, so a 256-token chunk fits the
encoder's window instead of being silently truncated by it.

A run of thousands of characters with no space in it (an inlined base64 image,
a minified page) has no boundary to cut at: the recursive splitter would measure
it one character at a time (100,000 characters took 31 s). Such a run is cut
into windows of ``chunk_tokens`` characters directly: an ASCII character is at
most one token, so such a window fits; one with other characters is measured,
and goes through the splitter after all if it does not fit.

    >>> splitter = make_splitter(embedder.tokenizer, chunk_tokens=256, overlap=32)  # doctest: +SKIP
    >>> chunks = chunk_pages("/docs/a.md", load_file(Path("/docs/a.md")), splitter)  # doctest: +SKIP
    >>> chunks[0].start, chunks[0].end      # character offsets into the page text
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.passage import Chunk
from rag.ingest.loaders import LoadError, Page

LONG_RUN = re.compile(r"\S{2000,}")  # characters with no space between: cut into windows, not split
LENGTH_CACHE = 1 << 16  # token counts of recent pieces: words and characters recur


@dataclass(frozen=True)
class Splitter:
    """The recursive splitter, its (cached) token counter and the sizes it was made with."""

    recursive: RecursiveCharacterTextSplitter
    tokens: functools._lru_cache_wrapper
    chunk_tokens: int
    overlap: int

    def split(self, text: str) -> Iterator[str]:
        """Chunk texts of ``text`` in order; long runs without a space cut into windows (module docstring)."""
        position = 0
        for run in LONG_RUN.finditer(text):
            yield from self.recursive.split_text(text[position : run.start()])
            yield from self._windows(run.group())
            position = run.end()
        yield from self.recursive.split_text(text[position:])

    def _windows(self, run: str) -> Iterator[str]:
        step = self.chunk_tokens - self.overlap
        for start in range(0, max(1, len(run) - self.overlap), step):
            window = run[start : start + self.chunk_tokens]
            # An ASCII character is at most one token for WordPiece and byte-level BPE alike: only others need counting.
            fits = window.isascii() or self.tokens(window) <= self.chunk_tokens
            yield from ([window] if fits else self.recursive.split_text(window))


def make_splitter(tokenizer, chunk_tokens: int, overlap: int) -> Splitter:
    if not 0 <= overlap < chunk_tokens:
        raise ValueError(f"chunk_overlap ({overlap}) must be >= 0 and smaller than chunk_tokens ({chunk_tokens})")

    @functools.lru_cache(maxsize=LENGTH_CACHE)
    def tokens(text: str) -> int:
        return len(tokenizer.tokenize(text))  # what RecursiveCharacterTextSplitter.from_huggingface_tokenizer measures

    recursive = RecursiveCharacterTextSplitter(length_function=tokens, chunk_size=chunk_tokens, chunk_overlap=overlap, strip_whitespace=True)
    return Splitter(recursive, tokens, chunk_tokens, overlap)


def chunk_pages(source: str, pages: list[Page], splitter: Splitter) -> list[Chunk]:
    chunks = []
    for page in pages:
        # Located here rather than with add_start_index: LangChain steps its search forward by
        # chunk_overlap *characters*, which overshoots when the overlap is measured in tokens.
        cursor = 0
        for text in splitter.split(page.text):
            start = page.text.find(text, cursor)
            if start < 0:
                raise LoadError(f"chunker returned text not found in the page: {text[:60]!r}")
            chunks.append(Chunk(text, source, page.page, start=start, end=start + len(text)))
            cursor = start + 1
    return chunks
