"""finetune(): data -> mode -> training loop -> artifact, run.json and loss.png, published atomically.

The artifact is assembled in a staging folder beside ``out`` and swapped in
(:func:`rag.runtime.atomic_folder`), so ``out`` holds either the previous state
or the complete new artifact, never half of one. ``out/checkpoints`` (for
``--resume``) and ``out/data`` (generated pairs) are carried over into the new folder.

    >>> record = finetune(FinetuneConfig("embeddings", "runs/embedder", qa="corpora/vellmar-qa.jsonl", index="indexes/vellmar"))  # doctest: +SKIP
    >>> record.metrics["after"]["recall@5"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from rag.config import Config
from rag.finetune import embeddings, full, lora, prompt_tuning, scratch
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import Data, load_data
from rag.finetune.sweep import SWEEP_FOLDER, chosen_rate, sweep_learning_rates
from rag.finetune.trainer import Task, save_loss_plot, train
from rag.models import resolve_device, resolve_precision
from rag.qa import question_fingerprint
from rag.runtime import atomic_folder, folder_bytes, peak_gpu_mb, peak_rss_mb

MODES: dict[str, Callable[[FinetuneConfig, Config, Data], Task]] = {
    "embeddings": embeddings.build,
    "lora": lora.build,
    "prompt-tuning": prompt_tuning.build,
    "full": full.build,
    "scratch": scratch.build,
}
CARRIED = ("checkpoints", "data", SWEEP_FOLDER)  # what a new artifact folder keeps from the old one
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """``run.json``: enough to know what was trained on what, how, and how well."""

    mode: str
    base_model: str
    data: str
    data_fingerprint: str
    train_examples: int
    val_examples: int
    train_questions: list[str]  # rag.qa.question_fingerprint of every training query: the eval refuses to score these
    # The same fingerprint of each training example's document (Example.document_key): rag.eval --split-by document
    # refuses to score a question about one of these.
    train_documents: list[str]
    folds: int | None  # cross-validation: trained on every fold of ``folds`` but ``fold`` (rag.qa.fold_of, seed ``seed``)
    fold: int | None
    hyperparameters: dict
    lr_sweep: list[dict]  # rag.finetune.sweep trials (lr, val_loss...): how hyperparameters["lr"] was chosen; [] if given
    seed: int
    device: str
    steps: int
    kept_step: int  # the step whose weights were saved: the one with the lowest validation loss (rag.finetune.trainer)
    resumed_from_step: int
    wall_seconds: float  # this invocation, loading and evaluation included
    trainable_params: int
    total_params: int
    artifact_bytes: int  # the artifact files only (no checkpoints, run.json or plot)
    metrics: dict  # before / after, final losses, throughput, peak resident memory
    train_losses: list[float]
    val_losses: list[tuple[int, float]]
    created: str

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


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
    # run.json records the precision the run computed in, not "auto"
    settings = dataclasses.replace(settings, precision=resolve_precision(settings.precision, resolve_device(config.device), "--precision"))
    out = Path(settings.out)
    check_out(out, settings.resume)
    data = load_data(settings, config)

    def build_task(trial: FinetuneConfig) -> Task:  # a fresh model each call: each sweep trial starts from the same weights
        torch.manual_seed(trial.seed)  # the random initialisation (a LoRA's A, a soft prompt, a scratch model) is part of the run
        return MODES[trial.mode](trial, config, data)

    sweep = sweep_learning_rates(settings, build_task, data.fingerprint, out / "checkpoints") if settings.lr_sweep else []
    if sweep:  # resume: from the best trial's checkpoints where the sweep handed them over
        settings = dataclasses.replace(settings, lr=chosen_rate(sweep), resume=True)
    task = build_task(settings)
    logger.info("%s: %d training and %d validation examples from %s", settings.mode, len(task.train), len(task.val), data.origin)
    state = train(task, settings, out / "checkpoints", data.fingerprint)
    after = {"val_loss": round(state.best_val_loss, 4), **(task.evaluate() if task.evaluate else {})}  # the kept weights
    logger.info("after training: %s", ", ".join(f"{k} {v:.4f}" for k, v in after.items()))
    throughput = {**state.throughput(), "peak_rss_mb": round(peak_rss_mb())}  # the model, data and training together
    if (gpu_mb := peak_gpu_mb()) is not None:  # on a GPU the resident memory is the host's share alone
        throughput["peak_gpu_mb"] = round(gpu_mb)
    logger.info("throughput: %s examples/s, %s tokens/s, peak memory %s MB%s", throughput["examples_per_s"], throughput["tokens_per_s"],
                throughput["peak_rss_mb"], f" (GPU {throughput['peak_gpu_mb']} MB)" if "peak_gpu_mb" in throughput else "")

    parameters = list(task.model.parameters())  # counted before --merge unwraps the adapter
    trainable, total = sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)
    with atomic_folder(out, carry=CARRIED) as staging:
        task.save(staging)
        artifact_bytes = folder_bytes(staging)
        if settings.merge:
            if task.merge is None:
                raise ValueError(f"--merge applies to lora only, not {settings.mode}")
            task.merge(staging)
        save_loss_plot(state, staging / "loss.png", f"{settings.mode} on {data.origin}")
        record = RunRecord(
            mode=settings.mode,
            base_model=config.embedder if settings.mode == "embeddings" else config.generator,
            data=data.origin,
            data_fingerprint=data.fingerprint,
            train_examples=len(task.train),
            val_examples=len(task.val),
            train_questions=[question_fingerprint(example.query) for example in data.train],
            train_documents=sorted({question_fingerprint(example.document_key) for example in data.train}),
            folds=settings.folds,
            fold=settings.fold,
            hyperparameters=settings.hyperparameters(),
            lr_sweep=[dataclasses.asdict(trial) for trial in sweep],
            seed=settings.seed,
            device=resolve_device(config.device),
            steps=state.step,
            kept_step=state.best_step,
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
    logger.info("wrote %s (%.1f MB artifact, %s of %s parameters trained)", out, artifact_bytes / 1e6,
                f"{record.trainable_params:,}", f"{record.total_params:,}")
    return record
