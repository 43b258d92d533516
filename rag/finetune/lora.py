"""LoRA mode: train low-rank updates of the generator's linear projections (Hu et al. 2021).

Each target linear layer W (d_out, d_in) gets W + (alpha / r) * B @ A, with A
(r, d_in) and B (d_out, r) trained and W frozen; B starts at zero, so training
starts from the base model exactly. The targets are found in the model, so any
architecture works: every linear layer inside an attention or MLP block
(:func:`lora_target_modules`; q/k/v/o and gate/up/down projections for SmolLM2
and Gemma 3), as Dettmers et al. (2023, QLoRA) found adapting all of them
needed to match full fine-tuning. ``--lora-targets q_proj,v_proj`` restores the
original paper's choice (about 0.46M trained parameters on the 135M SmolLM2).

``rag ask --adapter DIR`` plugs the adapter in; without the flag the base model
answers. ``--merge`` also writes ``DIR/merged``, the update folded into W, a
plain model folder for ``--generator DIR/merged`` (no PEFT at inference).

    >>> task = build(FinetuneConfig("lora", "runs/lora", qa="q.jsonl").resolved(), Config(), data)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from rag.config import Config
from rag.finetune.causal import causal_task, frozen_generator, generator_sequences, save_with_tokenizer
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import Data
from rag.finetune.trainer import Task
from rag.models import load_generator


# A block of a transformer layer whose linear layers LoRA adapts, matched on a module's dotted path.
ADAPTED_BLOCKS = re.compile(r"(?:^|\.)(?:self_attn|attn|attention|mlp|feed_forward|ffn)(?:\.|$)")


def lora_target_modules(model: nn.Module) -> list[str]:
    """The names (last path component) of the linear layers inside the model's attention and MLP blocks.

    >>> lora_target_modules(model)   # SmolLM2, Gemma 3          # doctest: +SKIP
    ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']
    """
    names = {
        path.rsplit(".", 1)[-1]
        for path, module in model.named_modules()
        if isinstance(module, nn.Linear) and ADAPTED_BLOCKS.search(path.rsplit(".", 1)[0])
    }
    if not names:
        raise ValueError(f"no linear layer inside an attention or MLP block of {type(model).__name__}; pass --lora-targets NAMES")
    return sorted(names)


def build(settings: FinetuneConfig, config: Config, data: Data) -> Task:
    from peft import LoraConfig, get_peft_model

    model, tokenizer = frozen_generator(settings, config)
    sequences = generator_sequences(settings, config, data, model, tokenizer)
    if settings.lora_targets == "auto":
        targets = lora_target_modules(model)
    elif settings.lora_targets == "all-linear":
        targets = settings.lora_targets
    else:
        targets = settings.lora_targets.split(",")
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
    )
    model = get_peft_model(model, lora)

    def merge(artifact: Path) -> None:
        # The saved adapter on the fp32 base: the training copy's frozen weights may be bf16 (--precision)
        merged, _ = load_generator(config, adapter=str(artifact), for_training=True)
        save_with_tokenizer(merged.merge_and_unload(), tokenizer, artifact / "merged")

    return causal_task(model, tokenizer, sequences, save=model.save_pretrained, merge=merge)
