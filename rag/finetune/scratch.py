"""Scratch mode: a small causal model trained from random weights on your documents, the floor of adaptation.

Source 003 of the user's documents compares RAG, fine-tuning and a model trained from scratch. This is
the last: the generator's own architecture, tokenizer and chat template, shrunk to ``scratch_layers``
layers of width ``scratch_width`` (nanoGPT-sized: 16.8M parameters with SmolLM2's 49k-token
vocabulary, most of them the embedding) and initialised at random (seeded), then trained like the
closed-book arms: each epoch the corpus, then the training questions without passages. It is scored
closed book, as ``full-cb``: what a model that knows only your documents can answer, which shows what
the pre-trained model brings. The artifact is a model folder, as the full mode writes.

    >>> task = build(FinetuneConfig("scratch", "runs/scratch", qa="q.jsonl").resolved(), Config(), data)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from rag.config import Config
from rag.finetune.causal import causal_task, generator_sequences, save_with_tokenizer
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import Data
from rag.finetune.trainer import Task
from rag.models import load_generator

HEAD_DIM = 64  # nanoGPT's and SmolLM2's width per attention head


def small_config(base, width: int, layers: int):
    """``base`` (a transformers model config) with ``layers`` layers of ``width``, the rest unchanged."""
    config = copy.deepcopy(base)
    heads = max(1, width // HEAD_DIM)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = width, 4 * width, layers
    config.num_attention_heads = config.num_key_value_heads = heads
    config.head_dim = width // heads
    if getattr(config, "layer_types", None):  # per-layer attention kinds (Gemma 3: sliding or full)
        config.layer_types = config.layer_types[:layers]
    return config


def build(settings: FinetuneConfig, config: Config, data: Data) -> Task:
    from transformers import AutoModelForCausalLM

    pretrained, tokenizer = load_generator(config, for_training=True)
    model = AutoModelForCausalLM.from_config(small_config(pretrained.config, settings.scratch_width, settings.scratch_layers))
    model = model.to(device=next(pretrained.parameters()).device, dtype=torch.float32)
    # The pre-trained model only writes the --paraphrases of the documents, if asked: a random one cannot.
    sequences = generator_sequences(settings, config, data, pretrained, tokenizer)
    del pretrained

    def save(folder: Path) -> None:
        save_with_tokenizer(model, tokenizer, folder)

    return causal_task(model, tokenizer, sequences, save=save)
