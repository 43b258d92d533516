"""The on-disk index: FAISS vectors, a SQLite docstore, a BM25 index and a manifest.

Layout of ``INDEX_DIR``::

    CURRENT              name of the live generation, swapped atomically
    gen-000003/
        manifest.json    embedder name + weight fingerprint, dimension, chunking, index type
        docstore.sqlite  chunks (text, source, page, offsets, language) and files (content hash)
        embeddings.npy   float32 (n_chunks, dim), row i = chunk id i; the FAISS index is rebuilt from it
        vectors.faiss    flat inner product, HNSW or IVF
        bm25/            bm25s index over the same chunks, each analyzed in its own language
                         (stop words and stemmer, rag.language); queries are analyzed in theirs

A writer builds a whole new generation beside the live one and only then
replaces ``CURRENT`` (``os.replace`` is atomic), so a crash or a kill mid-ingest
leaves the previous index complete and usable.

Readers never take the lock and are never broken by a writer. An :class:`Index`
loads its generation whole when it opens (FAISS and BM25 into memory, the
docstore and the vectors held open), so it keeps searching after a writer has
retired its folder; a writer deletes a generation only one write after it stops
being live, so a reader that has just read ``CURRENT`` finds it whole (and
:meth:`Index.open` retries if two writes went by meanwhile). A long-lived reader
calls :meth:`Index.latest` between questions to move to the newest generation.

    >>> index = Index.open("/tmp/i")                         # doctest: +SKIP
    >>> scores, ids = index.search_vectors(query_vectors, k=4)  # doctest: +SKIP
    >>> index = index.latest()                                # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import bm25s
import faiss
import numpy as np

from rag.config import Config
from rag.language import bm25_tokens
from rag.passage import Chunk
from rag.runtime import atomic_folder, atomic_write_text

# 2: chunks carry their language; BM25 terms are stemmed and stop-worded per language.
FORMAT_VERSION = 2
# bm25s sets its own logger to DEBUG at import, so each index build would log "Building index from tokens".
logging.getLogger("bm25s").setLevel(logging.WARNING)


class IndexStoreError(Exception):
    """An index that is missing, corrupt or built for another embedder (message says what to do)."""


@dataclass(frozen=True)
class Manifest:
    embedder: str
    embedder_fingerprint: str
    dimension: int
    chunk_tokens: int
    chunk_overlap: int
    index_type: str
    num_chunks: int
    num_files: int
    language: str = "auto"  # Config.language at ingest: "auto" (detected per chunk) or a fixed code
    updated: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    def check_embedder(self, name: str, fingerprint: str) -> None:
        """Refuse queries embedded by another model: their vectors live in another space."""
        if fingerprint != self.embedder_fingerprint:
            raise IndexStoreError(
                f"this index was built with embedder {self.embedder} (fingerprint {self.embedder_fingerprint}) "
                f"but the query embedder is {name} (fingerprint {fingerprint}); query with "
                f"--embedder {self.embedder}, or re-embed the index with `python -m rag.ingest DIR... --embedder {name}`"
            )


@dataclass(frozen=True)
class FileRecord:
    source: str
    sha256: str
    num_chunks: int


# ---------------------------------------------------------------------------- FAISS index types


def _flat(vectors: np.ndarray, config: Config) -> faiss.Index:
    return faiss.IndexFlatIP(vectors.shape[1])


def _hnsw(vectors: np.ndarray, config: Config) -> faiss.Index:
    return faiss.IndexHNSWFlat(vectors.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)


def _ivf(vectors: np.ndarray, config: Config) -> faiss.Index:
    # faiss wants >= 39 training points per list; 4*sqrt(n) lists is its usual rule of thumb.
    nlist = config.ivf_nlist or round(4 * math.sqrt(len(vectors)))
    nlist = max(1, min(nlist, len(vectors) // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    return index


FAISS_INDEX_TYPES = {"flat": _flat, "hnsw": _hnsw, "ivf": _ivf}


def apply_search_settings(index: faiss.Index, config: Config) -> None:
    """Set the search-time knobs of an approximate index (HNSW ``efSearch``, IVF ``nprobe``); flat has none."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.ivf_nprobe


def build_faiss(vectors: np.ndarray, config: Config) -> faiss.Index:
    """A FAISS index of the configured type holding ``vectors`` (n, dim), row i as id i."""
    if config.index_type not in FAISS_INDEX_TYPES:
        raise ValueError(f"unknown index_type {config.index_type!r}; choose one of {', '.join(FAISS_INDEX_TYPES)}")
    index = FAISS_INDEX_TYPES[config.index_type](vectors, config)
    index.add(vectors)
    return index


# ---------------------------------------------------------------------------- reading


def live_generation(index_dir: Path) -> str:
    """The name of the generation ``CURRENT`` points to."""
    try:
        return (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError) as error:
        raise IndexStoreError(f"no index at {index_dir}; build one with `python -m rag.ingest DIR... --index {index_dir}`") from error


OPEN_ATTEMPTS = 5  # each retry means a writer published twice while this reader was opening: rare


class Index:
    """A read-only snapshot of one generation of an index.

    ``eager`` (the default) loads FAISS and BM25 at once and holds the docstore
    and the vectors open, so the snapshot stays searchable after a writer retires
    its folder. A writer reading the index it is about to replace (under the lock,
    so nothing is retired meanwhile) passes ``eager=False``.
    """

    def __init__(self, folder: Path, *, eager: bool = True):
        self.folder = folder
        try:
            self.manifest = Manifest(**json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
        except (OSError, TypeError, json.JSONDecodeError) as error:
            raise IndexStoreError(f"index generation {folder} has no readable manifest ({error}); re-run rag.ingest") from error
        if self.manifest.format_version != FORMAT_VERSION:
            raise IndexStoreError(f"index {folder} has format {self.manifest.format_version}, expected {FORMAT_VERSION}; re-ingest it")
        try:
            self.db = sqlite3.connect(f"file:{folder / 'docstore.sqlite'}?mode=ro", uri=True, check_same_thread=False)
            self.db.execute("SELECT id FROM chunks LIMIT 1").fetchall()  # the file is open from here on
            self._embeddings = np.load(folder / "embeddings.npy", mmap_mode="r")  # a mapping outlives the file's name
            self._faiss = self._load_faiss() if eager else None
            self._bm25 = self._load_bm25() if eager else None
        except (OSError, RuntimeError, ValueError, sqlite3.Error) as error:  # faiss raises RuntimeError
            raise IndexStoreError(f"index generation {folder} is incomplete ({type(error).__name__}: {error}); re-run rag.ingest") from error

    @classmethod
    def open(cls, index_dir: str | Path, *, eager: bool = True) -> Index:
        """The live generation of ``index_dir``."""
        index_dir = Path(index_dir)
        if index_dir.exists() and not index_dir.is_dir():
            raise IndexStoreError(f"--index {index_dir} is a file, not an index folder")
        for attempt in range(OPEN_ATTEMPTS):
            name = live_generation(index_dir)
            try:
                return cls(index_dir / name, eager=eager)
            except IndexStoreError:
                # Retired while we opened it: two writes went by. Try the new one; else it is truly broken.
                if attempt + 1 == OPEN_ATTEMPTS or live_generation(index_dir) == name:
                    raise
        raise AssertionError("unreachable")

    @property
    def index_dir(self) -> Path:
        return self.folder.parent

    def latest(self) -> Index:
        """This snapshot if it is still the live generation, else the live one, opened: call it between questions."""
        if live_generation(self.index_dir) == self.folder.name:
            return self
        return Index.open(self.index_dir)

    def _load_faiss(self) -> faiss.Index:
        return faiss.read_index(str(self.folder / "vectors.faiss"))

    def _load_bm25(self) -> bm25s.BM25:
        return bm25s.BM25.load(str(self.folder / "bm25"))

    def __len__(self) -> int:
        return self.manifest.num_chunks

    def chunks(self, ids: list[int] | None = None) -> list[Chunk]:
        """Chunks by id, in the order asked (all chunks, in id order, when ``ids`` is None)."""
        columns = "id, text, source, page, start, end, language"  # the order of Chunk's fields after the id
        if ids is None:
            rows = self.db.execute(f"SELECT {columns} FROM chunks ORDER BY id").fetchall()
            return [Chunk(*row[1:]) for row in rows]
        marks = ",".join("?" * len(ids))
        rows = {row[0]: Chunk(*row[1:]) for row in self.db.execute(f"SELECT {columns} FROM chunks WHERE id IN ({marks})", ids)}
        return [rows[i] for i in ids]

    def chunk_ids_in_reading_order(self) -> list[int]:
        """Every chunk id, file by file (by path), each file's chunks in the order they are read."""
        return [row[0] for row in self.db.execute("SELECT id FROM chunks ORDER BY source, page, start, id")]

    def chunk_ids_of(self, source: str) -> list[int]:
        return [row[0] for row in self.db.execute("SELECT id FROM chunks WHERE source = ? ORDER BY id", (source,))]

    def files(self) -> dict[str, FileRecord]:
        return {row[0]: FileRecord(*row) for row in self.db.execute("SELECT source, sha256, num_chunks FROM files")}

    def embeddings(self) -> np.ndarray:
        """(num_chunks, dim) float32, memory-mapped: row i is chunk i's vector."""
        return self._embeddings

    def search_vectors(self, vectors: np.ndarray, k: int, config: Config = Config()) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product top-k: scores and ids, both (n_queries, k); id -1 pads short results.

        ``config`` gives the search settings of an approximate index (``hnsw_ef_search``, ``ivf_nprobe``).
        """
        if self._faiss is None:
            self._faiss = self._load_faiss()
        apply_search_settings(self._faiss, config)  # two attribute writes: cheap, and a caller may change its config
        return self._faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    def search_bm25(self, queries: list[str], k: int, languages: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top-k: scores and ids, both (n_queries, k); id -1 pads short results.

        ``languages[i]`` is the language ``queries[i]`` is analyzed in (stop words, stemmer).
        """
        if self._bm25 is None:
            self._bm25 = self._load_bm25()
        return search_bm25(self._bm25, len(self), queries, k, languages)


def build_bm25(texts: list[str], languages: list[str]) -> bm25s.BM25:
    """A bm25s index of ``texts``, each analyzed in its language (``languages[i]`` for ``texts[i]``)."""
    bm25 = bm25s.BM25()
    bm25.index(bm25_tokens(texts, languages), show_progress=False)
    return bm25


def search_bm25(bm25: bm25s.BM25, size: int, queries: list[str], k: int, languages: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Index.search_bm25` over any bm25s index of ``size`` documents."""
    n = min(k, size)
    vocabulary = bm25.vocab_dict
    # bm25s refuses terms it has not indexed; such a term matches nothing anyway.
    terms = [[term for term in query if term in vocabulary] for query in bm25_tokens(queries, languages)]
    ids, scores = bm25.retrieve(terms, k=n, show_progress=False, n_threads=1)
    pad = k - n
    return (
        np.pad(scores.astype(np.float32), ((0, 0), (0, pad)), constant_values=-np.inf),
        np.pad(ids.astype(np.int64), ((0, 0), (0, pad)), constant_values=-1),
    )


# ---------------------------------------------------------------------------- writing


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One writer at a time per index; readers never need the lock."""
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexStoreError(f"--index {index_dir} is a file; give a folder (new or written by rag.ingest)")
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise IndexStoreError(f"another rag.ingest is writing {index_dir}; wait for it to finish") from error
        yield


def write_generation(
    index_dir: Path,
    chunks: list[Chunk],
    embeddings: np.ndarray,
    files: list[FileRecord],
    manifest: Manifest,
    config: Config,
) -> Path:
    """Write a complete new generation, then make it live atomically; returns its folder.

    Call under :func:`writer_lock`. ``embeddings`` is (len(chunks), dim) float32, normalized.
    """
    current = index_dir / "CURRENT"
    previous = current.read_text(encoding="utf-8").strip() if current.is_file() else None
    number = int(previous.removeprefix("gen-")) + 1 if previous else 1
    folder = index_dir / f"gen-{number:06d}"
    for debris in index_dir.glob(".gen-*"):  # staging left by a killed run; no other writer holds the lock
        shutil.rmtree(debris, ignore_errors=True)

    with atomic_folder(folder, durable=True) as staging:  # data on disk before the pointer names it
        db = sqlite3.connect(staging / "docstore.sqlite")
        db.execute(
            "CREATE TABLE chunks (id INTEGER PRIMARY KEY, source TEXT, text TEXT, page INTEGER, start INTEGER, end INTEGER, language TEXT)"
        )
        db.execute("CREATE TABLE files (source TEXT PRIMARY KEY, sha256 TEXT, num_chunks INTEGER)")
        db.execute("CREATE INDEX chunks_by_source ON chunks(source)")
        db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, c.source, c.text, c.page, c.start, c.end, c.language) for i, c in enumerate(chunks)],
        )
        db.executemany("INSERT INTO files VALUES (?, ?, ?)", [(f.source, f.sha256, f.num_chunks) for f in files])
        db.commit()
        db.close()

        np.save(staging / "embeddings.npy", embeddings.astype(np.float32))
        faiss.write_index(build_faiss(np.ascontiguousarray(embeddings, dtype=np.float32), config), str(staging / "vectors.faiss"))
        build_bm25([c.text for c in chunks], [c.language for c in chunks]).save(str(staging / "bm25"))
        (staging / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")

    atomic_write_text(current, folder.name)
    # The generation just replaced stays one write longer: a reader may have read CURRENT a moment ago.
    for old in index_dir.glob("gen-*"):
        if old.name not in (folder.name, previous):
            shutil.rmtree(old, ignore_errors=True)
    return folder
