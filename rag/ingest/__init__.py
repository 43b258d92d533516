"""Ingest: load -> chunk -> embed -> index, incrementally.

The files considered are those found under the given paths plus those already
in the index that still exist. A file whose content hash is unchanged keeps
its chunks and vectors; a new or changed one is loaded, chunked and embedded;
one that no longer exists on disk loses its chunks. A different embedder or
chunking re-embeds everything (that is how a fine-tuned embedder is applied).

A file that cannot be read, loaded, repaired or chunked, for whatever reason,
is skipped and reported by name with the reason, and the run goes on; if an
earlier version of it is indexed, that version is kept. Folders are walked
without their hidden entries (``.git``, ``.venv``, dotfiles) and without
following a symbolic link into a folder already being walked.

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
import os
import stat
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

__all__ = ["IngestSummary", "NothingToIndex", "Skipped", "discover", "ingest"]
logger = logging.getLogger(__name__)


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
    embed_seconds: float = 0.0  # of which encoding the new chunks
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ToRead:
    path: Path
    data: bytes
    sha256: str
    previous: FileRecord | None = None  # the version indexed before, kept if this one cannot be read


@dataclass
class Changes:
    """What an ingest run does: chunks and vectors kept from the old index, files to read."""

    kept_rows: list[int] = field(default_factory=list)  # rows of the old index's embeddings
    kept_chunks: list[Chunk] = field(default_factory=list)
    records: list[FileRecord] = field(default_factory=list)  # of the kept files
    to_read: list[ToRead] = field(default_factory=list)

    def keep(self, old: Index, record: FileRecord) -> None:
        """Carry a file's chunks and vectors over from the old index unchanged."""
        ids = old.chunk_ids_of(record.source)
        self.kept_rows += ids
        self.kept_chunks += old.chunks(ids)
        self.records.append(record)


def _walk(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Files under ``folder``, sorted: hidden entries pruned, symlinked folders followed once, problems reported."""
    files, walked = [], set()

    def unreadable(error: OSError) -> None:
        skipped.append(Skipped(error.filename or str(folder), f"cannot list folder: {error.strerror or error}"))

    for root, folders, names in os.walk(folder, followlinks=True, onerror=unreadable):
        real = os.stat(root)
        if (real.st_dev, real.st_ino) in walked:  # reached again through a symbolic link
            skipped.append(Skipped(root, "symlink loop or folder linked twice: already walked"))
            folders.clear()
            continue
        walked.add((real.st_dev, real.st_ino))
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        files += [Path(root, name) for name in sorted(names) if not name.startswith(".")]
    return files


def _regular_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a document (a FIFO would block the read forever), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else "no such file or directory"
    except OSError as error:
        return error.strerror or str(error)
    return None if stat.S_ISREG(mode) else "not a regular file"


def discover(paths: list[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """Supported files under ``paths`` (walked recursively, sorted), and what was passed over and why.

    A file named explicitly is taken even if hidden; inside a folder, hidden files
    and folders are left out.
    """
    found, skipped = [], []
    for given in map(Path, paths):
        candidates = _walk(given, skipped) if given.is_dir() else [given]
        for path in candidates:
            if (problem := _regular_file(path)) is not None:
                skipped.append(Skipped(str(path), problem))
            elif is_supported(path):
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
        previous = old_files.get(str(path)) if reusable else None
        try:
            data = path.read_bytes()
        except OSError as error:
            skip(changes, old, previous, Skipped(str(path), error.strerror or str(error)), summary)
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        if previous and previous.sha256 == sha256:
            changes.keep(old, previous)
            summary.files_unchanged += 1
        else:
            changes.to_read.append(ToRead(path, data, sha256, previous))
    return changes


def skip(changes: Changes, old: Index | None, previous: FileRecord | None, skipped: Skipped, summary: IngestSummary) -> None:
    """Report a file that cannot be indexed now; keep the version indexed before, if any: nothing stored is lost."""
    if previous is not None:
        changes.keep(old, previous)
        skipped = Skipped(skipped.path, skipped.reason + "; kept the version indexed before")
    summary.skipped.append(skipped)
    logger.debug("skipped %s: %s", skipped.path, skipped.reason)


def label_languages(chunks: list[Chunk], setting: str) -> list[Chunk]:
    """The chunks of one file, each with its language (``Config.language``: ``auto`` or a fixed code).

    ``auto`` detects each chunk's language; a chunk with no evidence (a table of
    numbers, a list of names) takes its file's.
    """
    document = resolve_language(setting, "\n".join(c.text for c in chunks))
    return [dataclasses.replace(c, language=resolve_language(setting, c.text, default=document)) for c in chunks]


def load_and_chunk(
    changes: Changes, old: Index | None, tokenizer, config: Config, summary: IngestSummary, show_progress: bool
) -> tuple[list[Chunk], list[FileRecord]]:
    """Chunks and file records of the files to read; a file that fails is skipped with its reason (see :func:`skip`)."""
    splitter = make_splitter(tokenizer, config.chunk_tokens, config.chunk_overlap)
    chunks, records = [], []
    for item in tqdm(changes.to_read, desc="reading", unit="file", disable=not show_progress):
        try:
            pages = load_file(item.path, item.data, config.pdf_password)
            file_chunks = label_languages(chunk_pages(str(item.path), pages, splitter), config.language)
        except Exception as error:  # noqa: BLE001 - whatever breaks on one file (a parser bug too) is that file's alone
            reason = str(error) if isinstance(error, LoadError) else f"{type(error).__name__}: {error}"
            skip(changes, old, item.previous, Skipped(str(item.path), reason), summary)
            continue
        chunks += file_chunks
        records.append(FileRecord(str(item.path), item.sha256, len(file_chunks)))
        summary.files_read += 1
    return chunks, records


def previous_generation(index_dir: Path) -> Index | None:
    """The live generation to update; None to build from scratch (no index yet, or one this version cannot read)."""
    if not (index_dir / "CURRENT").is_file():
        return None
    try:
        return Index.open(index_dir, eager=False)  # the caller holds the writer lock: nothing is retired meanwhile
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
            new_chunks, new_records = load_and_chunk(changes, old, embedder.tokenizer, config, summary, show_progress)

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
                began = time.perf_counter()
                new_vectors = embed_texts(embedder, [c.text for c in new_chunks], config.embed_batch_size, show_progress)
                summary.embed_seconds = round(time.perf_counter() - began, 3)
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
