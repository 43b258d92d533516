"""Ingest: load -> chunk -> embed -> index, incrementally.

The files considered are those found under the given paths plus those already
in the index that still exist. A file whose content hash is unchanged keeps
its chunks and vectors; a new or changed one is loaded, chunked and embedded;
one that no longer exists on disk loses its chunks. A different embedder or
chunking re-embeds everything (that is how a fine-tuned embedder is applied).
Unreadable files are reported by name with the reason and the run goes on.

:func:`ingest` reads as its steps: :func:`plan_changes` (what to keep, read
and drop), :func:`load_and_chunk`, then embedding and :func:`rag.index.write_generation`.

    >>> from rag.ingest import ingest
    >>> summary = ingest(["corpora/vellmar"], "/tmp/i")  # doctest: +SKIP
    >>> summary.chunks_total, summary.skipped            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rag.config import Config
from rag.embed import embed_texts, load_embedder
from rag.index import FileRecord, Index, IndexStoreError, Manifest, write_generation, writer_lock
from rag.ingest.chunking import chunk_pages, make_splitter
from rag.ingest.loaders import LoadError, is_supported, load_file
from rag.language import resolve_language
from rag.models import embedder_source
from rag.passage import Chunk

logger = logging.getLogger(__name__)

__all__ = ["IngestSummary", "NothingToIndex", "Skipped", "ingest"]


class NothingToIndex(Exception):
    """No readable document among the inputs and no existing index content."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class IngestSummary:
    index: str
    files_read: int = 0  # new or changed files loaded and embedded
    files_unchanged: int = 0
    files_removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    changed: bool = False
    seconds: float = 0.0
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Changes:
    """What an ingest run does: chunks and vectors kept from the old index, files to read."""

    kept_rows: list[int] = field(default_factory=list)  # rows of the old index's embeddings
    kept_chunks: list[Chunk] = field(default_factory=list)
    records: list[FileRecord] = field(default_factory=list)  # of the kept files
    to_read: list[tuple[Path, bytes, str]] = field(default_factory=list)  # (path, content, sha256)


def discover(paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Supported files under ``paths`` (recursively, sorted), and what was passed over and why."""
    found, skipped = [], []
    for given in map(Path, paths):
        if given.is_dir():
            candidates = sorted(p for p in given.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif given.is_file():
            candidates = [given]
        else:
            skipped.append(Skipped(str(given), "no such file or directory"))
            continue
        for path in candidates:
            if is_supported(path):
                found.append(path.resolve())
            else:
                skipped.append(Skipped(str(path), f"unsupported extension {path.suffix or '(none)'}"))
    return list(dict.fromkeys(found)), skipped


def plan_changes(files: list[Path], old: Index | None, fingerprint: str, config: Config, summary: IngestSummary) -> Changes:
    """Keep the chunks of unchanged files, read new and changed ones, count removed ones.

    Files indexed earlier from other folders stay, as long as they exist. A
    different embedder, chunking or language setting makes nothing reusable.
    """
    reusable = old is not None and (
        old.manifest.embedder_fingerprint,
        old.manifest.chunk_tokens,
        old.manifest.chunk_overlap,
        old.manifest.language,
    ) == (fingerprint, config.chunk_tokens, config.chunk_overlap, config.language)
    old_files = old.files() if old else {}
    given = set(files)
    files = files + [Path(s) for s in old_files if Path(s).is_file() and Path(s) not in given]
    summary.files_removed = sum(1 for s in old_files if not Path(s).is_file())
    changes = Changes()
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            summary.skipped.append(Skipped(str(path), error.strerror or str(error)))
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        previous = old_files.get(str(path))
        if reusable and previous and previous.sha256 == sha256:
            ids = old.chunk_ids_of(str(path))
            changes.kept_rows += ids
            changes.kept_chunks += old.chunks(ids)
            changes.records.append(previous)
            summary.files_unchanged += 1
        else:
            changes.to_read.append((path, data, sha256))
    return changes


def label_languages(chunks: list[Chunk], setting: str) -> list[Chunk]:
    """The chunks of one file, each with its language (``Config.language``: ``auto`` or a fixed code).

    ``auto`` detects each chunk's language; a chunk with no evidence (a table of
    numbers, a list of names) takes its file's.
    """
    document = resolve_language(setting, "\n".join(c.text for c in chunks))
    return [dataclasses.replace(c, language=resolve_language(setting, c.text, default=document)) for c in chunks]


def load_and_chunk(
    to_read: list[tuple[Path, bytes, str]], tokenizer, config: Config, summary: IngestSummary, show_progress: bool
) -> tuple[list[Chunk], list[FileRecord]]:
    """Chunks and file records of the files to read; a file that cannot be read is skipped with its reason."""
    splitter = make_splitter(tokenizer, config.chunk_tokens, config.chunk_overlap)
    chunks, records = [], []
    for path, data, sha256 in tqdm(to_read, desc="reading", unit="file", disable=not show_progress):
        try:
            file_chunks = label_languages(chunk_pages(str(path), load_file(path, data, config.pdf_password), splitter), config.language)
        except LoadError as error:
            summary.skipped.append(Skipped(str(path), str(error)))
            continue
        chunks += file_chunks
        records.append(FileRecord(str(path), sha256, len(file_chunks)))
        summary.files_read += 1
    return chunks, records


def previous_generation(index_dir: Path) -> Index | None:
    """The live generation to update; None to build from scratch (no index yet, or one this version cannot read)."""
    if not (index_dir / "CURRENT").is_file():
        return None
    try:
        return Index.open(index_dir)
    except IndexStoreError as error:  # an older format or a damaged manifest: re-reading the files rebuilds it
        logger.warning("rebuilding %s from its files: %s", index_dir, error)
        return None


def ingest(
    paths: list[str | Path],
    index_dir: str | Path,
    config: Config = Config(),
    *,
    embedder=None,
    show_progress: bool = False,
) -> IngestSummary:
    """Bring the index at ``index_dir`` up to date with ``paths``; see the module docstring."""
    started = time.perf_counter()
    index_dir = Path(index_dir)
    summary = IngestSummary(index=str(index_dir))
    files, summary.skipped = discover(paths)
    with writer_lock(index_dir):
        old = previous_generation(index_dir)
        fingerprint = embedder_source(config.embedder).fingerprint()
        changes = plan_changes(files, old, fingerprint, config, summary)
        new_chunks, new_records = [], []
        if changes.to_read:  # the embedder loads only when something needs embedding
            embedder = embedder or load_embedder(config)
            new_chunks, new_records = load_and_chunk(changes.to_read, embedder.tokenizer, config, summary, show_progress)

        total = len(changes.kept_chunks) + len(new_chunks)
        if total == 0:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in summary.skipped) or "no input paths"
            raise NothingToIndex(f"nothing to index ({reasons})")
        summary.chunks_added = len(new_chunks)
        summary.chunks_removed = (len(old) if old else 0) - len(changes.kept_chunks)
        summary.chunks_total = total
        summary.changed = bool(new_chunks or summary.chunks_removed or old is None or config.index_type != old.manifest.index_type)
        if summary.changed:
            if new_chunks:
                new_vectors = embed_texts(embedder, [c.text for c in new_chunks], config.embed_batch_size, show_progress)
            else:  # only removals or a new index type: no model needed
                new_vectors = np.zeros((0, old.manifest.dimension), dtype=np.float32)
            old_vectors = old.embeddings()[changes.kept_rows] if changes.kept_rows else new_vectors[:0]
            records = changes.records + new_records
            manifest = Manifest(
                embedder=config.embedder,
                embedder_fingerprint=fingerprint,
                dimension=new_vectors.shape[1],
                chunk_tokens=config.chunk_tokens,
                chunk_overlap=config.chunk_overlap,
                index_type=config.index_type,
                num_chunks=total,
                num_files=len(records),
                language=config.language,
            )
            chunks = changes.kept_chunks + new_chunks
            write_generation(index_dir, chunks, np.concatenate([old_vectors, new_vectors]), records, manifest, config)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
