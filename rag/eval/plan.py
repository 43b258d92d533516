"""The plan of an eval run: which retrievers and generators to cross, and which default variants are left out and why.

Left to the defaults, every combination whose artifacts were given runs and the
others are listed as skipped; a variant named explicitly whose artifact is
missing is an error naming the flag.

    >>> settings = EvalConfig("corpora/vellmar-qa.jsonl", "reports/x", corpus=("corpora/vellmar",))
    >>> [spec.name for spec in plan(settings.override({"retrievers": "none,bm25"}))[0]]
    ['none', 'bm25']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.config import CLOSED_BOOK
from rag.eval.artifacts import Artifacts, Unavailable
from rag.eval.config import SPLITS, EvalConfig
from rag.eval.variants import GENERATORS, RETRIEVERS, GeneratorSpec, RetrieverSpec


@dataclass(frozen=True)
class Skipped:
    variant: str
    reason: str


def _select(kind: str, requested: tuple[str, ...] | None, variants: dict, build: Callable) -> tuple[list, list[Skipped]]:
    if requested is not None:
        unknown = [name for name in requested if name not in variants]
        if unknown:
            raise ValueError(f"unknown {kind}(s) {', '.join(unknown)}; choose from {', '.join(variants)}")
        try:
            return [build(variants[name]) for name in dict.fromkeys(requested)], []
        except Unavailable as error:
            raise ValueError(str(error)) from None
    chosen, skipped = [], []
    for name, variant in variants.items():
        try:
            chosen.append(build(variant))
        except Unavailable as error:
            skipped.append(Skipped(f"{kind} {name}", str(error)))
    return chosen, skipped


def plan(settings: EvalConfig) -> tuple[list[RetrieverSpec], list[GeneratorSpec], list[Skipped]]:
    """The retrievers and generators to cross, and the default variants left out (with why)."""
    if settings.split not in SPLITS:
        raise ValueError(f"unknown split {settings.split!r}; choose one of {', '.join(SPLITS)}")
    given = [flag for flag, value in (("--corpus", settings.corpus), ("--index", settings.index), ("--corpus-from-qa", settings.corpus_from_qa)) if value]
    if len(given) > 1:
        raise ValueError(f"give one of --corpus, --index and --corpus-from-qa, not {' and '.join(given)}")
    artifacts = Artifacts.of(settings)
    retrievers, skipped_r = _select("retriever", settings.retrievers, RETRIEVERS, lambda variant: variant(artifacts))
    models = settings.models or (settings.rag.generator,)
    generators, skipped_g = [], []
    for number, model in enumerate(dict.fromkeys(models)):
        config = settings.rag.override({"generator": model})
        specs, skipped = _select("generator", settings.generators, GENERATORS, lambda variant: variant(config, artifacts))
        if number:
            # A fine-tuned artifact was trained from one model, the first listed: the others get the untrained adaptations.
            specs = [spec for spec in specs if not spec.fine_tuned]
        elif skipped:
            skipped_g += skipped
        if len(models) > 1:
            specs = [spec.labelled(model_label(model)) for spec in specs]
        generators += specs
    if not any(r.method == CLOSED_BOOK for r in retrievers):  # lora-cb, full-cb: trained to answer without passages
        skipped_g += [Skipped(f"generator {g.name}", f"scored closed book only: add {CLOSED_BOOK} to --retrievers")
                      for g in generators if g.closed_book_only]
        generators = [g for g in generators if not g.closed_book_only]
    return retrievers, generators, skipped_r + skipped_g


def model_label(model: str) -> str:
    """A generator model spec as a variant suffix: the package name, or the folder's name."""
    return model.removeprefix("package:").rstrip("/").rsplit("/", 1)[-1]
