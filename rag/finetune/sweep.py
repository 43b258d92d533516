"""Learning-rate sweep: a run's rate chosen on its own validation loss, never on the questions the eval scores.

Each rate of ``lr_sweep`` trains a fresh model for ``sweep_steps`` optimizer steps (the run's whole budget
when unset; the warm-up and decay span the trial's own steps) under ``out/lr-sweep/lr-RATE/``. The rate
whose kept weights reached the lowest validation loss (the run's validation slice, drawn from its training
folds) then trains the artifact, and ``run.json`` records every trial. A finished trial leaves only its
``trial.json`` (its checkpoints are deleted), so an interrupted sweep resumes at the trial it stopped in.
When each trial trains the whole budget, the artifact's training would repeat the best trial step for step:
the best trial so far keeps its checkpoints instead, and they become the run's own, which resumes from its
last step, so a sweep of n rates costs n trainings, not n + 1.

    >>> chosen_rate([Trial(1e-4, 2.9, 8, 8, 60.0), Trial(3e-4, 2.6, 8, 8, 61.0), Trial(1e-3, 2.7, 4, 8, 60.5)])
    0.0003
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.finetune.config import FinetuneConfig
from rag.finetune.trainer import Task, train
from rag.runtime import atomic_write_text

SWEEP_FOLDER = "lr-sweep"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    lr: float
    val_loss: float  # the lowest validation loss the trial reached: what the rate is chosen on
    kept_step: int
    steps: int
    train_seconds: float


def chosen_rate(trials: list[Trial]) -> float:
    """The rate of the trial with the lowest validation loss (the first of equals)."""
    return min(trials, key=lambda trial: trial.val_loss).lr


def unbracketed_end(trials: list[Trial]) -> str | None:
    """The end of a grid of several rates that the chosen rate is ("highest" or "lowest"), where a rate beyond it may
    do better still; None when the choice has a worse rate on both sides.

    >>> unbracketed_end([Trial(1e-4, 2.9, 8, 8, 60.0), Trial(3e-4, 2.6, 8, 8, 61.0)])
    'highest'
    """
    rates = sorted(trial.lr for trial in trials)
    best = chosen_rate(trials)
    if len(rates) < 2 or rates[0] < best < rates[-1]:
        return None
    return "highest" if best == rates[-1] else "lowest"


def sweep_learning_rates(settings: FinetuneConfig, build_task: Callable[[FinetuneConfig], Task], data_fingerprint: str,
                         checkpoints: Path) -> list[Trial]:
    """Train one trial per rate of ``settings.lr_sweep`` (``build_task`` gives each a fresh model) and return them all;
    a whole-budget sweep hands the best trial's checkpoints to ``checkpoints``, the run's own."""
    whole_budget = settings.sweep_steps is None
    trials = []
    for rate in settings.lr_sweep:
        record = trial_folder(settings, rate) / "trial.json"
        if record.is_file():
            trial = Trial(**json.loads(record.read_text(encoding="utf-8")))
        else:
            trial_settings = dataclasses.replace(
                settings, lr=rate, lr_sweep=(), sweep_steps=None, max_steps=settings.sweep_steps or settings.max_steps, resume=True
            )
            state = train(build_task(trial_settings), trial_settings, record.parent / "checkpoints", data_fingerprint)
            trial = Trial(rate, round(state.best_val_loss, 4), state.best_step, state.step, round(state.train_seconds, 1))
            atomic_write_text(record, json.dumps(asdict(trial)) + "\n")
        logger.info("lr sweep: lr %g, validation loss %.4f (step %d of %d)", trial.lr, trial.val_loss, trial.kept_step, trial.steps)
        trials.append(trial)
        best = chosen_rate(trials)
        for finished in trials:  # a full model's optimizer state is gigabytes: keep one trial's at most
            if not (whole_budget and finished.lr == best):
                shutil.rmtree(trial_folder(settings, finished.lr) / "checkpoints", ignore_errors=True)
    end = unbracketed_end(trials)
    if end:
        logger.warning("lr sweep: %g, the lowest validation loss, is the grid's %s rate: one beyond it may be lower "
                       "still; widen --lr-sweep to bracket it", best, end)
    best_checkpoints = trial_folder(settings, best) / "checkpoints"
    if whole_budget and best_checkpoints.is_dir():
        # The best trial's checkpoints survive only where it has not handed them over yet: whatever the run holds
        # is another rate's (a sweep widened on a finished run, or a run with --lr first) and must not be resumed.
        shutil.rmtree(checkpoints, ignore_errors=True)
        best_checkpoints.rename(checkpoints)
        logger.info("lr sweep: the trial at lr %g trained the whole budget; the run resumes from it", best)
    else:
        logger.info("lr sweep: training with lr %g, the lowest validation loss", best)
    return trials


def trial_folder(settings: FinetuneConfig, rate: float) -> Path:
    return Path(settings.out) / SWEEP_FOLDER / f"lr-{rate:g}"
