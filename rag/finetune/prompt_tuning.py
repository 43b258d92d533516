"""Prompt-tuning mode: a trained soft prompt before a frozen generator (Lester et al. 2021).

N virtual token embeddings, a (N, hidden) matrix, are prepended to every input
and trained; the model itself never changes. Lester et al. found gains flatten
past about 20 tokens and that initialising from real token embeddings beats a
random start, so the default is 20 tokens initialised from the preprompt text
(repeated or cut to N tokens). The artifact is a PEFT folder of a few KB:
``rag ask --soft-prompt DIR``.

    >>> task = build(FinetuneConfig("prompt-tuning", "runs/soft", qa="q.jsonl").resolved(), Config(), data)  # doctest: +SKIP
"""

from __future__ import annotations

from rag.config import Config
from rag.finetune.causal import causal_task, frozen_generator, generator_sequences
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import Data
from rag.finetune.trainer import Task
from rag.language import resolve_language
from rag.prompt import preprompt
from rag.models import float_generator_folder


def build(settings: FinetuneConfig, config: Config, data: Data) -> Task:
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    model, tokenizer = frozen_generator(settings, config)
    sequences = generator_sequences(settings, config, data, model, tokenizer)
    soft_prompt = PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=settings.virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT,
        # The preprompt in the training questions' language, as the prompts it trains on.
        prompt_tuning_init_text=settings.init_text or preprompt(config, resolve_language(config.language, " ".join(e.query for e in data.train))),
        tokenizer_name_or_path=str(float_generator_folder(config)),
    )
    model = get_peft_model(model, soft_prompt)
    return causal_task(model, tokenizer, sequences, save=model.save_pretrained)
