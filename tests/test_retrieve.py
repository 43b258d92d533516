"""Retrieval: dense, BM25 and hybrid find the gold source on real questions."""

import pytest
from conftest import QA_FILE, SHARED

from rag import Index, Retriever, ingest
from rag.qa import load_qa
from rag.retrieve import reciprocal_rank_fusion


@pytest.fixture(scope="module")
def retriever(vellmar_index, config, embedder):
    return Retriever(Index.open(vellmar_index), config, embedder=embedder)


def hit_rate(retriever, items, method, k):
    results = retriever.search([item.question for item in items], method, k)
    found = [any(hit.chunk.source.endswith("/" + item.source) for hit in hits) for item, hits in zip(items, results)]
    return sum(found) / len(found)


@pytest.mark.parametrize(("method", "floor"), [("dense", 0.8), ("bm25", 0.8), ("hybrid", 0.85)])
def test_gold_file_is_in_the_top_4(retriever, method, floor):
    answered = [item for item in load_qa(QA_FILE) if item.source]
    assert hit_rate(retriever, answered, method, k=4) >= floor


def test_results_are_ranked_best_first_and_sized_k(retriever):
    for method in ("dense", "bm25", "hybrid"):
        hits = retriever.search(["When does the winter timetable start?"], method, k=3)[0]
        assert len(hits) == 3
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_matches_a_rare_name_exactly(retriever):
    hit = retriever.search(["Maren Quillfeather"], "bm25", k=1)[0][0]
    assert hit.chunk.source.endswith("about.md") and "Quillfeather" in hit.chunk.text


def test_bm25_returns_nothing_for_words_absent_from_the_corpus(retriever):
    assert retriever.search(["xylophone zeppelin"], "bm25", k=4) == [[]]


def test_unknown_method_lists_the_choices(retriever):
    with pytest.raises(ValueError, match="dense, bm25, hybrid"):
        retriever.search(["x"], "splade")


def test_reciprocal_rank_fusion_by_hand():
    # chunk 7: ranks 1 and 2 -> 1/61 + 1/62; chunk 3: rank 2 -> 1/62; chunk 9: rank 1 -> 1/61
    fused = reciprocal_rank_fusion([[(7, 0.9), (3, 0.5)], [(9, 12.0), (7, 8.0)]], rrf_k=60)
    assert [cid for cid, _ in fused] == [7, 9, 3]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_dense_retrieval_on_squad_paragraphs(tmp_path, config, embedder):
    items = load_qa(SHARED / "squad" / "notre-dame-train-v1.1.json")
    paragraphs = list(dict.fromkeys(item.context for item in items))
    corpus = tmp_path / "paragraphs"
    corpus.mkdir()
    for number, text in enumerate(paragraphs):
        (corpus / f"p{number:03d}.txt").write_text(text, encoding="utf-8")
    ingest([corpus], tmp_path / "index", config, embedder=embedder)
    retriever = Retriever(Index.open(tmp_path / "index"), config, embedder=embedder)
    gold = [f"p{paragraphs.index(item.context):03d}.txt" for item in items]
    results = retriever.search([item.question for item in items], "dense", k=5)
    recall_at_5 = sum(any(h.chunk.source.endswith(g) for h in hits) for g, hits in zip(gold, results)) / len(items)
    assert recall_at_5 >= 0.8


@pytest.mark.parametrize(
    ("index_type", "build", "setting", "low", "high"),
    [("hnsw", {"hnsw_m": 4}, "hnsw_ef_search", 1, 400), ("ivf", {"ivf_nlist": 8}, "ivf_nprobe", 1, 8)],
)
def test_search_settings_trade_speed_for_recall(tmp_path, config, embedder, index_type, build, setting, low, high):
    # Real embeddings of SQuAD questions and paragraphs; the first 40 are held out as queries.
    from rag.embed import embed_texts
    from rag.index import Manifest, build_faiss, write_generation, writer_lock
    from rag.passage import Chunk

    items = load_qa(SHARED / "squad" / "notre-dame-train-v1.1.json")
    texts = list(dict.fromkeys([item.question for item in items] + [item.context for item in items]))
    vectors = embed_texts(embedder, texts, config.embed_batch_size)
    queries, stored = vectors[:40], vectors[40:]
    built = config.override({"index_type": index_type, **build})
    manifest = Manifest("e", "f", stored.shape[1], 0, 0, index_type, len(stored), 0)
    with writer_lock(tmp_path):
        write_generation(tmp_path, [Chunk(text) for text in texts[40:]], stored, [], manifest, built)
    index = Index.open(tmp_path)
    exact = build_faiss(stored, config).search(queries, 10)[1]  # (40, 10) flat inner product

    def recall_at_10(value):
        found = index.search_vectors(queries, 10, built.override({setting: value}))[1]
        return sum(len(set(f) & set(e)) for f, e in zip(found, exact)) / exact.size

    assert recall_at_10(low) < 0.8
    assert recall_at_10(high) >= 0.99
