"""Approximate nearest neighbours on real text: latency beside recall@10 against exact search.

The corpus is real English prose found offline: the docstrings and the .md/.rst/.txt files of
the installed Python packages, plus the SQuAD paragraphs under ``../shared/data/squad``, split
into sentences and deduplicated. It is embedded once by the configured encoder and cached
(``~/.cache/rag-lab/bench``), so reruns cost only the index builds and the searches.

Recall@10 is the share of the exact top 10 (``IndexFlatIP``) an index returns in its own top 10,
averaged over held-out sentences used as queries (they are not in the index).

    >>> sentences = real_sentences(60_000)                                   # doctest: +SKIP
    >>> vectors = cached_embeddings(sentences, embedder, Config())            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from timing import percentiles_ms

from rag.config import Config
from rag.embed import embed_texts
from rag.index import apply_search_settings, build_faiss
from rag.models import embedder_source

CACHE = Path("~/.cache/rag-lab/bench").expanduser()
SHARED_SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"
TEXT_SUFFIXES = (".md", ".rst", ".txt")
DOCSTRING = re.compile(r'"""(.*?)"""', re.DOTALL)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Lines of code, doctest prompts, reST directives and tables are not prose.
NOT_PROSE = re.compile(r">>>|::|\.\. |==|->|\{|\}|`|\|  |http|www\.|_[a-z]+_|\(\)")
RECALL_AT = 10
EMBED_BLOCK = 2048  # sentences per cached embedding file


@dataclass(frozen=True)
class AnnRow:
    index_type: str  # flat (exact) | hnsw | ivf
    setting: str  # the search setting swept: hnsw_ef_search, ivf_nprobe ("-" for flat)
    value: int
    chunks: int
    queries: int
    p50_ms: float  # one query per FAISS search call, one thread
    p95_ms: float
    recall_at_10: float  # share of the exact top 10 found
    build_s: float


def _prose(text: str) -> list[str]:
    """Sentences of 6 to 60 words with no code-like marks, whitespace collapsed."""
    kept = []
    for sentence in SENTENCE_END.split(" ".join(text.split())):
        words = sentence.split()
        if 6 <= len(words) <= 60 and not NOT_PROSE.search(sentence) and sentence[-1] in ".!?":
            letters = sum(ch.isalpha() or ch == " " for ch in sentence)
            if letters >= 0.85 * len(sentence):
                kept.append(sentence)
    return kept


def _texts_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="ignore")
    if path.suffix == ".py":
        return DOCSTRING.findall(text)
    if path.suffix == ".json":  # SQuAD: the paragraphs, not the questions
        return [p["context"] for article in json.loads(text)["data"] for p in article["paragraphs"]]
    return [text]


def real_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct real sentences (shuffled with ``seed``), read once and cached as text.

    Raises ``ValueError`` when the installed packages hold fewer.
    """
    cache = CACHE / "sentences.txt"
    if not cache.is_file():
        packages = Path(sysconfig.get_paths()["purelib"])
        paths = sorted(p for p in packages.rglob("*") if p.suffix in (".py", *TEXT_SUFFIXES)) + sorted(SHARED_SQUAD.glob("*.json"))
        seen: dict[str, None] = {}
        for path in paths:
            for text in _texts_of(path):
                for sentence in _prose(text):
                    seen.setdefault(sentence, None)
        CACHE.mkdir(parents=True, exist_ok=True)
        cache.write_text("\n".join(seen), encoding="utf-8")
    sentences = cache.read_text(encoding="utf-8").split("\n")
    if len(sentences) < count:
        raise ValueError(f"only {len(sentences)} real sentences found offline, {count} asked; lower --ann-size")
    random.Random(seed).shuffle(sentences)
    return sentences[:count]


def cached_embeddings(sentences: list[str], embedder, config: Config) -> np.ndarray:
    """Embeddings (len(sentences), dim) float32, embedded in blocks cached by content, encoder and dtype.

    A block is saved as soon as it is embedded, so an interrupted run resumes where it stopped.
    """
    fingerprint = embedder_source(config.embedder).fingerprint()
    dtype = str(next(embedder.parameters()).dtype)
    blocks = []
    for start in range(0, len(sentences), EMBED_BLOCK):
        block = sentences[start : start + EMBED_BLOCK]
        key = hashlib.sha256("\n".join([fingerprint, dtype, *block]).encode()).hexdigest()[:20]
        path = CACHE / f"embeddings-{key}.npy"
        if not path.is_file():
            CACHE.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial.npy")  # renamed once whole: a killed run leaves no truncated block
            np.save(partial, embed_texts(embedder, block, config.embed_batch_size))
            partial.replace(path)
            print(f"  embedded {start + len(block)} of {len(sentences)} sentences", flush=True)
        blocks.append(np.load(path))
    return np.concatenate(blocks)  # (len(sentences), dim)


def _top_ids(index: faiss.Index, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Top-10 ids (n_queries, 10), one query per call, and each call's seconds."""
    ids, seconds = [], []
    for query in queries:
        began = time.perf_counter()
        _, found = index.search(query[None, :], RECALL_AT)  # (1, 10)
        seconds.append(time.perf_counter() - began)
        ids.append(found[0])
    return np.stack(ids), seconds


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each exact row's ids present in the same row of ``found`` (both (n_queries, k))."""
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def sweep(vectors: np.ndarray, queries: np.ndarray, config: Config, sweeps: dict[str, list[int]]) -> list[AnnRow]:
    """Latency and recall@10 of flat, then of each index type at each value of its search setting.

    ``sweeps`` maps an index type to the values of its setting, e.g. ``{"hnsw": [16, 64]}``.
    """
    settings = {"hnsw": "hnsw_ef_search", "ivf": "ivf_nprobe"}
    faiss.omp_set_num_threads(1)  # single-query latency, and the CPU is shared
    exact_index = build_faiss(vectors, config.override({"index_type": "flat"}))
    exact, seconds = _top_ids(exact_index, queries)
    rows = [AnnRow("flat", "-", 0, len(vectors), len(queries), *percentiles_ms(seconds), 1.0, 0.0)]
    for index_type, values in sweeps.items():
        began = time.perf_counter()
        index = build_faiss(vectors, config.override({"index_type": index_type}))
        build_s = round(time.perf_counter() - began, 2)
        for value in values:
            apply_search_settings(index, config.override({settings[index_type]: value}))
            found, seconds = _top_ids(index, queries)
            rows.append(
                AnnRow(index_type, settings[index_type], value, len(vectors), len(queries), *percentiles_ms(seconds), round(recall(found, exact), 4), build_s)
            )
    return rows
