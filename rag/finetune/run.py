"""finetune(): data -> mode -> training loop -> artifact, run.json and loss.png, published atomically.

The artifact is assembled in a staging folder beside ``out`` and swapped in by
two renames, so ``out`` holds either the previous state or the complete new
artifact, never half of one. ``out/checkpoints`` (for ``--resume``) and
``out/data`` (generated pairs) are carried over into the new folder.

    >>> record = finetune(FinetuneConfig("embeddings", "runs/embedder", qa="corpora/vellmar-qa.jsonl", index="indexes/vellmar"))  # doctest: +SKIP
    >>> record.metrics["after"]["recall@5"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rag.config import Config
from rag.finetune import embeddings, full, lora, prompt_tuning
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import Data, load_data
from rag.finetune.trainer import Task, save_loss_plot, train
from rag.models import folder_bytes, resolve_device

MODES: dict[str, Callable[[FinetuneConfig, Config, Data], Task]] = {
    "embeddings": embeddings.build,
    "lora": lora.build,
    "prompt-tuning": prompt_tuning.build,
    "full": full.build,
}
CARRIED = ("checkpoints", "data")  # what a new artifact folder keeps from the old one


@dataclass(frozen=True)
class RunRecord:
    """``run.json``: enough to know what was trained on what, how, and how well."""

    mode: str
    base_model: str
    data: str
    data_fingerprint: str
    train_examples: int
    val_examples: int
    hyperparameters: dict
    seed: int
    device: str
    steps: int
    resumed_from_step: int
    wall_seconds: float  # this invocation, loading and evaluation included
    trainable_params: int
    total_params: int
    artifact_bytes: int  # the artifact files only (no checkpoints, run.json or plot)
    metrics: dict  # before / after, final losses, throughput
    train_losses: list[float]
    val_losses: list[tuple[int, float]]
    created: str

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def publish(staging: Path, out: Path) -> None:
    """Make ``staging`` the new ``out``, keeping ``out``'s checkpoints and generated data."""
    for name in CARRIED:
        if (out / name).exists():
            os.rename(out / name, staging / name)
    retired = None
    if out.exists():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, retired)
    os.rename(staging, out)
    if retired:
        shutil.rmtree(retired, ignore_errors=True)


def check_out(out: Path, resume: bool) -> None:
    """Refuse to overwrite a finished or interrupted run unless asked to continue it."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise ValueError(f"--out {out} already holds a run; pass --resume to continue it, or choose another --out")


def finetune(settings: FinetuneConfig, config: Config = Config()) -> RunRecord:
    """Train one mode as ``settings`` say and write the artifact, ``run.json`` and ``loss.png`` to ``settings.out``."""
    started = time.perf_counter()
    settings = settings.resolved()
    out = Path(settings.out)
    check_out(out, settings.resume)
    data = load_data(settings, config)
    task = MODES[settings.mode](settings, config, data)
    print(f"{settings.mode}: {len(task.train)} training and {len(task.val)} validation examples from {data.origin}")
    state = train(task, settings, out / "checkpoints", data.fingerprint)
    after = {"val_loss": round(state.val_losses[-1][1], 4), **(task.evaluate() if task.evaluate else {})}
    print(f"after training: {', '.join(f'{k} {v:.4f}' for k, v in after.items())}")
    throughput = state.throughput()
    print(f"throughput: {throughput['examples_per_s']} examples/s, {throughput['tokens_per_s']} tokens/s")

    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = list(task.model.parameters())  # counted before --merge unwraps the adapter
    trainable, total = sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the artifact is an ordinary folder
    try:
        task.save(staging)
        artifact_bytes = folder_bytes(staging)
        if settings.merge:
            if task.merge is None:
                raise ValueError(f"--merge applies to lora only, not {settings.mode}")
            task.merge(staging / "merged")
        save_loss_plot(state, staging / "loss.png", f"{settings.mode} on {data.origin}")
        record = RunRecord(
            mode=settings.mode,
            base_model=config.embedder if settings.mode == "embeddings" else config.generator,
            data=data.origin,
            data_fingerprint=data.fingerprint,
            train_examples=len(task.train),
            val_examples=len(task.val),
            hyperparameters=settings.hyperparameters(),
            seed=settings.seed,
            device=resolve_device(config.device),
            steps=state.step,
            resumed_from_step=state.resumed_from,
            wall_seconds=round(time.perf_counter() - started, 2),
            trainable_params=trainable,
            total_params=total,
            artifact_bytes=artifact_bytes,
            metrics={
                "before": state.before,
                "after": after,
                "train_loss": state.train_losses[-1] if state.train_losses else None,
                **throughput,
            },
            train_losses=state.train_losses,
            val_losses=state.val_losses,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        record.write(staging / "run.json")
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published
    print(f"wrote {out} ({artifact_bytes / 1e6:.1f} MB artifact, {record.trainable_params:,} of {record.total_params:,} parameters trained)")
    return record
