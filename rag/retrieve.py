"""Retrieve: dense (FAISS), BM25 (bm25s) and hybrid (reciprocal rank fusion) search.

Each method is a small function ``(retriever, questions, depth) -> rankings``
picked by name; a ranking is a list of ``(chunk_id, score)``, best first.
Hybrid fuses the dense and BM25 rankings with reciprocal rank fusion
(Cormack, Clarke and Buettcher, SIGIR 2009): score = sum of 1 / (rrf_k + rank).
``corpus`` is not a search: every chunk in reading order, the same for each question,
whatever ``k``; the prompt keeps what ``corpus_context_tokens`` holds (rag/config.py WHOLE_CORPUS).

    >>> retriever = Retriever(Index.open("/tmp/i"))          # doctest: +SKIP
    >>> hits = retriever.search(["Who founded it?"], "hybrid", k=4)[0]  # doctest: +SKIP
    >>> hits[0].chunk.source, hits[0].score                  # doctest: +SKIP
    >>> retriever.refresh()     # between questions: move to a generation a writer published since  # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from rag.config import WHOLE_CORPUS, Config
from rag.embed import embed_texts, for_index, load_embedder
from rag.index import Index, build_bm25, search_bm25
from rag.language import resolve_language
from rag.passage import Chunk, Passage

Ranking = list[tuple[int, float]]


@dataclass(frozen=True)
class Retrieved:
    chunk_id: int
    score: float
    chunk: Chunk


class Retriever:
    """Search one index. The query embedder defaults to the one the index was built with."""

    def __init__(self, index: Index, config: Config = Config(), *, embedder_spec: str | None = None, embedder=None):
        self.index = index
        self.config = for_index(index.manifest, config, embedder_spec)
        self._embedder = embedder
        self._asked = (config, embedder_spec)  # to check the query embedder again against a new generation

    def refresh(self) -> bool:
        """Search the index's live generation from now on, if a writer published a new one; True if so.

        A new generation built with another encoder (re-embedded with a fine-tuned
        one) gets its own query encoder, or an ``IndexStoreError`` if
        ``embedder_spec`` named one that does not match it.
        """
        latest = self.index.latest()
        if latest is self.index:
            return False
        if latest.manifest.embedder_fingerprint != self.index.manifest.embedder_fingerprint:
            self.config = for_index(latest.manifest, *self._asked)
            self._embedder = None
        self.index = latest
        return True

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = load_embedder(self.config)
        return self._embedder

    def search(self, questions: list[str], method: str | None = None, k: int | None = None) -> list[list[Retrieved]]:
        """Top-``k`` chunks for each question with the named method (default: config.retriever); every chunk with ``corpus``."""
        method = method or self.config.retriever
        k = self.config.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if any(not question.strip() for question in questions):
            raise ValueError("a question is blank: ask something (an empty query would rank every chunk alike)")
        if method not in RETRIEVAL_METHODS:
            raise ValueError(f"unknown retriever {method!r}; choose one of {', '.join(RETRIEVAL_METHODS)}")
        k = len(self.index) if method == WHOLE_CORPUS else k
        rankings = [ranking[:k] for ranking in RETRIEVAL_METHODS[method](self, questions, k)]
        wanted = sorted({cid for ranking in rankings for cid, _ in ranking})
        by_id = dict(zip(wanted, self.index.chunks(wanted)))
        return [[Retrieved(cid, score, by_id[cid]) for cid, score in ranking] for ranking in rankings]


def _rankings(scores, ids) -> list[Ranking]:
    return [[(int(i), float(s)) for s, i in zip(row_scores, row_ids) if i >= 0] for row_scores, row_ids in zip(scores, ids)]


def dense(retriever: Retriever, questions: list[str], depth: int) -> list[Ranking]:
    vectors = embed_texts(retriever.embedder, questions, retriever.config.embed_batch_size)  # (n_questions, dim)
    return _rankings(*retriever.index.search_vectors(vectors, depth, retriever.config))


def bm25(retriever: Retriever, questions: list[str], depth: int) -> list[Ranking]:
    return _bm25_matches(retriever.index.search_bm25, questions, depth, retriever.config)


def bm25_passages(passages: list[Passage], questions: list[str], depth: int, config: Config = Config()) -> list[Ranking]:
    """BM25 over any passages, as :func:`bm25` ranks an index's chunks: rankings of positions in ``passages``."""
    # Each passage analyzed in its own language, as rag.ingest analyzes a chunk.
    index = build_bm25([p.text for p in passages], [resolve_language(config.language, p.text) for p in passages])
    search = lambda queries, k, languages: search_bm25(index, len(passages), queries, k, languages)  # noqa: E731
    return _bm25_matches(search, questions, depth, config)


def _bm25_matches(search, questions: list[str], depth: int, config: Config) -> list[Ranking]:
    # Each question is analyzed in its own language, as each chunk was at ingest.
    languages = [resolve_language(config.language, question) for question in questions]
    # A chunk sharing no term with the question scores 0: it is not a match.
    return [[(i, s) for i, s in ranking if s > 0] for ranking in _rankings(*search(questions, depth, languages))]


def reciprocal_rank_fusion(rankings: list[Ranking], rrf_k: int) -> Ranking:
    """Fuse rankings of one query: each chunk scores sum(1 / (rrf_k + rank)), rank from 1."""
    scores: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, 1):
            scores[chunk_id] += 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def hybrid(retriever: Retriever, questions: list[str], depth: int) -> list[Ranking]:
    depth = max(depth, retriever.config.fusion_depth)
    return [
        reciprocal_rank_fusion(list(rankings), retriever.config.rrf_k)
        for rankings in zip(dense(retriever, questions, depth), bm25(retriever, questions, depth))
    ]


def whole_corpus(retriever: Retriever, questions: list[str], depth: int) -> list[Ranking]:
    ranking = [(chunk_id, 0.0) for chunk_id in retriever.index.chunk_ids_in_reading_order()[:depth]]
    return [ranking for _ in questions]


RETRIEVAL_METHODS: dict[str, Callable[[Retriever, list[str], int], list[Ranking]]] = {
    "dense": dense,
    "bm25": bm25,
    "hybrid": hybrid,
    WHOLE_CORPUS: whole_corpus,
}
