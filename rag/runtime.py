"""Process and file-system helpers every stage shares: memory high-water marks, folder size, atomic publishing.

Everything the lab stores (an index generation, a fine-tuned artifact, a
training checkpoint, the dequantized generator cache, a report) is written the
same way: into a staging folder or file beside its final name, then renamed
over it, so a reader or a crash never sees half of it.

    >>> with atomic_folder(Path("runs/lora")) as staging:   # doctest: +SKIP
    ...     model.save_pretrained(staging)                   # runs/lora appears whole, or not at all
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    """This process's resident memory high-water mark."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def _gpus_in_use() -> range:
    """The GPUs' indexes, or none where this process has not used CUDA (asking would initialise it)."""
    return range(torch.cuda.device_count() if torch.cuda.is_available() and torch.cuda.is_initialized() else 0)


def peak_gpu_mb() -> float | None:
    """The most GPU memory this process's tensors held at once (PyTorch's allocator), or None if it used no GPU."""
    devices = _gpus_in_use()
    return sum(torch.cuda.max_memory_allocated(device) for device in devices) / 2**20 if devices else None


def reset_gpu_peak() -> None:
    """Start :func:`peak_gpu_mb` afresh from what is allocated now (no-op without a GPU in use)."""
    for device in _gpus_in_use():
        torch.cuda.reset_peak_memory_stats(device)


def folder_bytes(folder: Path) -> int:
    """Size on disk of every file under ``folder``: what an artifact costs to keep."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _fsync_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


@contextmanager
def atomic_folder(target: Path, *, carry: Sequence[str] = (), durable: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; when the block ends, it becomes ``target``.

    Entries of the old ``target`` named in ``carry`` move into the new one
    first; the old folder is renamed aside, the staging folder renamed in, then
    the old one deleted. If the block raises, the staging folder is removed and
    ``target`` is untouched. ``durable`` fsyncs every file before the rename
    (what a pointer swapped right after relies on).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        if durable:
            _fsync_files(staging)
        for name in carry:
            if (target / name).exists():
                os.rename(target / name, staging / name)
        retired = None
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, retired / target.name)
        os.rename(staging, target)
        if retired:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone when published


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a file beside it, fsynced, then ``os.replace``d over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(staged, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staged, path)
