"""Full mode: train every weight of the 135M generator.

The reference point for LoRA and prompt tuning: all 135M parameters move, so
the learning rate is 10x lower than LoRA's (2e-5). Where a batch runs padded in
one pass (a GPU), activations are recomputed in the backward pass (gradient
checkpointing, ``--gradient-checkpointing``) to trade about a quarter more
compute for far less memory; on a CPU each sequence runs alone and its
activations fit. The artifact is a whole model folder with its tokenizer (about
540 MB in float32): ``rag ask --generator DIR``.

    >>> task = build(FinetuneConfig("full", "runs/full", qa="q.jsonl").resolved(), Config(), data)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from rag.config import Config
from rag.finetune.causal import causal_task, generator_sequences, save_with_tokenizer
from rag.finetune.config import PREPROMPT_OBJECTIVE, FinetuneConfig
from rag.finetune.data import Data
from rag.finetune.trainer import Task
from rag.models import load_generator


def build(settings: FinetuneConfig, config: Config, data: Data) -> Task:
    model, tokenizer = load_generator(config, for_training=True)
    sequences = generator_sequences(settings, config, data, model, tokenizer)
    model.config.use_cache = False  # a KV cache is useless in training and conflicts with checkpointing

    def save(folder: Path) -> None:
        model.config.use_cache = True  # the saved model generates with a cache again
        save_with_tokenizer(model, tokenizer, folder)

    task = causal_task(model, tokenizer, sequences, save=save)
    if recomputes_activations(settings, task):
        # use_reentrant=False: the recommended variant, and it works with frozen inputs (embeddings in eval).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return task


def recomputes_activations(settings: FinetuneConfig, task: Task) -> bool:
    """Whether the backward pass recomputes activations: ``--gradient-checkpointing on``, or ``auto`` where a batch
    runs padded in one pass (no :attr:`Task.parts`), unless the corpus is prefilled into a cache (preprompt objective):
    a checkpointed layer drops a given cache (transformers sets ``past_key_values=None``), and the question's
    attention mask, which spans the corpus, then fails against its own keys."""
    if settings.gradient_checkpointing == "auto":
        return task.parts is None and settings.objective != PREPROMPT_OBJECTIVE
    return settings.gradient_checkpointing == "on"
