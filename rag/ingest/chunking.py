"""Split pages into overlapping chunks measured in the embedder's own tokens.

langchain-text-splitters' recursive splitter cuts on paragraph, then line,
then sentence, then word boundaries, so a chunk rarely stops mid-sentence; its
length function is the embedder's tokenizer, so a 256-token chunk fits the
encoder's window instead of being silently truncated by it.

    >>> splitter = make_splitter(embedder.tokenizer, chunk_tokens=256, overlap=32)  # doctest: +SKIP
    >>> chunks = chunk_pages("/docs/a.md", load_file(Path("/docs/a.md")), splitter)  # doctest: +SKIP
    >>> chunks[0].start, chunks[0].end      # character offsets into the page text
"""

from __future__ import annotations

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.passage import Chunk
from rag.ingest.loaders import LoadError, Page


def make_splitter(tokenizer, chunk_tokens: int, overlap: int) -> RecursiveCharacterTextSplitter:
    if not 0 <= overlap < chunk_tokens:
        raise ValueError(f"chunk_overlap ({overlap}) must be >= 0 and smaller than chunk_tokens ({chunk_tokens})")
    return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=chunk_tokens, chunk_overlap=overlap, strip_whitespace=True
    )


def chunk_pages(source: str, pages: list[Page], splitter: RecursiveCharacterTextSplitter) -> list[Chunk]:
    chunks = []
    for page in pages:
        # Located here rather than with add_start_index: LangChain steps its search forward by
        # chunk_overlap *characters*, which overshoots when the overlap is measured in tokens.
        cursor = 0
        for text in splitter.split_text(page.text):
            start = page.text.find(text, cursor)
            if start < 0:
                raise LoadError(f"chunker returned text not found in the page: {text[:60]!r}")
            chunks.append(Chunk(text, source, page.page, start=start, end=start + len(text)))
            cursor = start + 1
    return chunks
