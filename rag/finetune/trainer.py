"""The training loop every mode shares: AdamW, warm-up then linear decay, checkpoints, resume.

A mode hands over a :class:`Task` (the model, examples, a loss and a way to
save the artifact); the loop owns everything else: a progress bar with the
loss, the validation loss before training, at the end of each epoch and every
``validate_every`` steps, training throughput, and a checkpoint in
``checkpoints/step-NNNNNN`` every ``checkpoint_every`` steps, at each validation,
at the end and on Ctrl-C.

The weights with the best validation loss after training started are kept in
``checkpoints/best`` and are what the run returns, not those of the last step:
every arm trained for a common maximum of epochs keeps the point where it did best
on data it does not train on (its validation slice, never the scored questions).

A checkpoint holds only the trainable parameters, the optimizer state and a
:class:`TrainState`. The batch order is a pure function of (seed, epoch) and the
dropout seed of (seed, step), so a resumed run takes the very steps the
uninterrupted one would have taken. The learning rate is recomputed from the
step and the total, so ``--resume --max-steps`` may extend a finished run.

    >>> lr_factor(0, total=10, warmup=2), lr_factor(2, total=10, warmup=2), lr_factor(9, total=10, warmup=2)
    (0.5, 1.0, 0.125)
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rag.finetune.config import FinetuneConfig
from rag.models import PRECISIONS, resolve_dtype, resolve_precision
from rag.runtime import atomic_folder

logger = logging.getLogger(__name__)


def shuffled_batches(examples: list, size: int, rng: random.Random) -> list[list]:
    order = list(range(len(examples)))
    rng.shuffle(order)
    return [[examples[i] for i in order[start : start + size]] for start in range(0, len(order), size)]


@dataclass
class Task:
    """What a mode gives the loop. Parameters of ``model`` with ``requires_grad`` are trained."""

    model: torch.nn.Module
    train: list
    val: list
    loss: Callable[[list], tuple[torch.Tensor, int]]  # batch -> (mean loss, input tokens in the batch)
    save: Callable[[Path], None]  # write the artifact into an empty folder
    evaluate: Callable[[], dict[str, float]] | None = None  # metrics besides the loss, before and after
    batches: Callable[[list, int, random.Random], list[list]] = shuffled_batches
    merge: Callable[[Path], None] | None = None  # lora --merge: write ARTIFACT/merged from the saved ARTIFACT
    # batch -> (part, weight) pairs whose weighted losses sum to the batch's mean loss: each part runs forward and
    # backward alone (gradient accumulation), so only one part's activations are held at a time. None: the batch whole.
    parts: Callable[[list], list[tuple[list, float]]] | None = None
    # How much a batch counts in the validation loss: its examples, or for a loss averaged over tokens its scored
    # tokens, so that the validation loss is the mean over the whole validation set whatever the batch size.
    weight: Callable[[list], float] = len


def training_dtype(settings: FinetuneConfig, device: str) -> torch.dtype:
    """The dtype the loss is computed in on ``device`` (``settings.precision``, "auto" resolved)."""
    return resolve_dtype(settings.precision, device, "--precision")


def batch_loss(task: Task, batch: list, backward: bool, dtype: torch.dtype = torch.float32) -> tuple[float, int]:
    """The mean loss of ``batch`` and its input tokens, over ``task.parts`` if it has them; ``backward`` adds the gradients.

    The forward pass runs under autocast to ``dtype`` (fp32: none); the backward pass follows the forward's dtypes.
    """
    total, tokens = 0.0, 0
    device = next(task.model.parameters()).device.type
    for part, weight in task.parts(batch) if task.parts else [(batch, 1.0)]:
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            loss, part_tokens = task.loss(part)
        if backward:
            (loss * weight).backward()
        total += loss.item() * weight
        tokens += part_tokens
    return total, tokens


@dataclass
class TrainState:
    fingerprint: str  # of the data; a checkpoint only resumes on the same data
    precision: str = "fp32"  # the loss's dtype (--precision, "auto" resolved); a checkpoint resumes only in it
    step: int = 0
    train_losses: list[float] = field(default_factory=list)  # one per step
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss): before training, then each validation
    best_step: int = 0  # the trained step with the lowest validation loss: its weights are in checkpoints/best
    best_val_loss: float | None = None
    before: dict[str, float] = field(default_factory=dict)  # metrics of the untrained model
    train_seconds: float = 0.0  # optimizer steps only, summed over resumed runs
    examples_seen: int = 0
    tokens_seen: int = 0
    resumed_from: int = 0

    def throughput(self) -> dict[str, float]:
        seconds = max(self.train_seconds, 1e-9)
        return {"examples_per_s": round(self.examples_seen / seconds, 2), "tokens_per_s": round(self.tokens_seen / seconds, 1)}


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay towards 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def plan_steps(task: Task, settings: FinetuneConfig) -> list[tuple[int, list]]:
    """(epoch, batch) for every step: ``epochs`` passes, or exactly ``max_steps`` steps cycling the data.

    Raises ``ValueError`` when the data make no batch at all (one example where a
    batch needs two): cycling would never reach ``max_steps``, and without it the
    "trained" artifact would be the untrained model.
    """
    plan: list[tuple[int, list]] = []
    epoch = 0
    while (len(plan) < settings.max_steps) if settings.max_steps else (epoch < settings.epochs):
        batches = task.batches(task.train, settings.batch_size, random.Random(f"{settings.seed}:{epoch}"))
        if not batches:
            need = " (an embeddings batch needs two pairs with distinct texts)" if settings.mode == "embeddings" else ""
            raise ValueError(
                f"no training batch: {len(task.train)} training examples make no batch of {settings.batch_size}{need}; "
                "train on more examples (a higher --limit, or more data)"
            )
        plan += [(epoch, batch) for batch in batches]
        epoch += 1
    return plan[: settings.max_steps] if settings.max_steps else plan


@torch.no_grad()
def validation_loss(task: Task, batch_size: int, dtype: torch.dtype = torch.float32) -> float:
    """The mean loss over ``task.val``, each batch weighted by :attr:`Task.weight` (a token-averaged loss then does
    not depend on ``batch_size``: runs trained with different batch sizes compare)."""
    task.model.eval()
    total, count = 0.0, 0
    for start in range(0, len(task.val), batch_size):
        batch = task.val[start : start + batch_size]
        weight = task.weight(batch)
        total += batch_loss(task, batch, backward=False, dtype=dtype)[0] * weight
        count += weight
    return total / count


def train(task: Task, settings: FinetuneConfig, checkpoints: Path, fingerprint: str) -> TrainState:
    """Train ``task`` as ``settings`` (resolved) say; returns the final state. See the module docstring."""
    trainable = {name: p for name, p in task.model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=settings.lr, weight_decay=settings.weight_decay)
    precision = resolve_precision(settings.precision, next(task.model.parameters()).device.type, "--precision")
    dtype = PRECISIONS[precision]
    state = TrainState(fingerprint, precision=precision)
    if settings.resume:
        state = load_checkpoint(checkpoints, trainable, optimizer, fingerprint, state.precision) or state
    plan = plan_steps(task, settings)
    warmup = math.ceil(settings.warmup_ratio * len(plan))
    if not state.val_losses:
        loss = validation_loss(task, settings.batch_size, dtype)
        state.val_losses.append((0, loss))
        state.before = {"val_loss": round(loss, 4), **(task.evaluate() if task.evaluate else {})}
        logger.info("before training: %s", _format(state.before))

    bar = tqdm(total=len(plan), initial=state.step, desc=f"{settings.mode} training", unit="step", dynamic_ncols=True)
    try:
        while state.step < len(plan):
            epoch, batch = plan[state.step]
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * lr_factor(state.step, len(plan), warmup)
            torch.manual_seed(settings.seed * 1_000_003 + state.step)  # same dropout masks when resumed
            task.model.train()
            began = time.perf_counter()
            loss, tokens = batch_loss(task, batch, backward=True, dtype=dtype)
            torch.nn.utils.clip_grad_norm_(trainable.values(), settings.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.train_seconds += time.perf_counter() - began
            state.examples_seen += len(batch)
            state.tokens_seen += tokens
            state.step += 1
            state.train_losses.append(round(loss, 5))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", epoch=epoch + 1)

            last = state.step == len(plan)
            epoch_end = last or plan[state.step][0] != epoch
            validating = epoch_end or (settings.validate_every and state.step % settings.validate_every == 0)
            if validating:
                loss = validation_loss(task, settings.batch_size, dtype)
                state.val_losses.append((state.step, loss))
                logger.info("epoch %d: step %d, validation loss %.4f", epoch + 1, state.step, loss)
                if state.best_val_loss is None or loss < state.best_val_loss:
                    state.best_step, state.best_val_loss = state.step, loss
                    save_trainable(checkpoints / "best", trainable)
            if validating or state.step % settings.checkpoint_every == 0:
                save_checkpoint(checkpoints, trainable, optimizer, state)
    except KeyboardInterrupt:
        save_checkpoint(checkpoints, trainable, optimizer, state)
        logger.info("interrupted at step %d; continue with --resume", state.step)
        raise
    finally:
        bar.close()
    if state.best_val_loss is None:  # resumed from a checkpoint written before runs kept their best: its last
        state.best_step, state.best_val_loss = state.step, state.val_losses[-1][1]
    elif state.best_step != state.step:
        logger.info("keeping step %d (validation loss %.4f), not the last step %d (%.4f)",
                    state.best_step, state.best_val_loss, state.step, state.val_losses[-1][1])
        load_trainable(checkpoints / "best", trainable)
    return state


def _format(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


# ---------------------------------------------------------------------------- checkpoints


def latest_checkpoint(checkpoints: Path) -> Path | None:
    found = sorted(checkpoints.glob("step-*"))
    return found[-1] if found else None


def write_trainable(folder: Path, trainable: dict[str, torch.nn.Parameter]) -> None:
    # .pt, not .safetensors: rag.models fingerprints an embedder folder by its weight files
    torch.save({name: p.detach().cpu() for name, p in trainable.items()}, folder / "trainable.pt")


def save_trainable(folder: Path, trainable: dict[str, torch.nn.Parameter]) -> None:
    """The trainable parameters alone, in ``folder`` replaced atomically (the best checkpoint so far)."""
    with atomic_folder(folder) as staging:
        write_trainable(staging, trainable)


def load_trainable(folder: Path, trainable: dict[str, torch.nn.Parameter]) -> None:
    saved = torch.load(folder / "trainable.pt", map_location="cpu")
    if saved.keys() != trainable.keys():
        raise ValueError(f"checkpoint {folder} holds other parameters than this model trains; was it another mode?")
    with torch.no_grad():
        for name, tensor in saved.items():
            trainable[name].copy_(tensor)


def save_checkpoint(checkpoints: Path, trainable: dict[str, torch.nn.Parameter], optimizer, state: TrainState) -> None:
    """Write ``step-NNNNNN`` beside the previous one, then delete the previous: a kill never leaves none."""
    folder = checkpoints / f"step-{state.step:06d}"
    with atomic_folder(folder) as staging:
        write_trainable(staging, trainable)
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
    for old in checkpoints.glob("step-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(checkpoints: Path, trainable: dict[str, torch.nn.Parameter], optimizer, fingerprint: str,
                    precision: str) -> TrainState | None:
    folder = latest_checkpoint(checkpoints)
    if folder is None:
        logger.info("--resume: no checkpoint under %s, starting from step 0", checkpoints)
        return None
    state = TrainState(**json.loads((folder / "state.json").read_text(encoding="utf-8")))
    if state.fingerprint != fingerprint:
        raise ValueError(
            f"checkpoint {folder} was trained on other data (fingerprint {state.fingerprint}, now {fingerprint}); "
            "resume with the same data flags and --limit, or choose another --out"
        )
    if state.precision != precision:
        raise ValueError(f"checkpoint {folder} was trained with --precision {state.precision}, and this run's is {precision}; "
                         f"resume with --precision {state.precision}, or choose another --out")
    load_trainable(folder, trainable)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu"))
    state.val_losses = [tuple(pair) for pair in state.val_losses]
    state.resumed_from = state.step
    logger.info("resuming from %s (step %d)", folder, state.step)
    return state


def save_loss_plot(state: TrainState, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(range(1, len(state.train_losses) + 1), state.train_losses, label="training (per step)", linewidth=1)
    steps, losses = zip(*state.val_losses)
    axes.plot(steps, losses, "o-", label="validation")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
