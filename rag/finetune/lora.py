"""LoRA mode: train low-rank updates of the generator's attention projections (Hu et al. 2021).

Each target linear layer W (d_out, d_in) gets W + (alpha / r) * B @ A, with A
(r, d_in) and B (d_out, r) trained and W frozen; B starts at zero, so training
starts from the base model exactly. With r=8 on q_proj and v_proj of the 135M
generator that is about 0.46M trained parameters and a 1.8 MB adapter.

``rag ask --adapter DIR`` plugs the adapter in; without the flag the base model
answers. ``--merge`` also writes ``DIR/merged``, the update folded into W, a
plain model folder for ``--generator DIR/merged`` (no PEFT at inference).

    >>> task = build(FinetuneConfig("lora", "runs/lora", qa="q.jsonl").resolved(), Config(), data)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from rag.config import Config
from rag.finetune.causal import causal_task, generator_sequences, save_with_tokenizer
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import Data
from rag.finetune.trainer import Task
from rag.models import load_generator


def build(settings: FinetuneConfig, config: Config, data: Data) -> Task:
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_generator(config, for_training=True)
    sequences = generator_sequences(settings, config, data, model, tokenizer)
    targets = settings.lora_targets if settings.lora_targets == "all-linear" else settings.lora_targets.split(",")
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
    )
    model = get_peft_model(model, lora)

    def merge(folder: Path) -> None:
        save_with_tokenizer(model.merge_and_unload(), tokenizer, folder)

    return causal_task(model, tokenizer, sequences, save=model.save_pretrained, merge=merge)
