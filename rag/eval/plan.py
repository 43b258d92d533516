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

from rag.config import CLOSED_BOOK, WHOLE_CORPUS
from rag.eval.artifacts import Artifacts, Unavailable
from rag.eval.config import SPLITS, EvalConfig
from rag.eval.variants import GENERATORS, RETRIEVERS, GeneratorSpec, RetrieverSpec
from rag.qa import check_split_unit


@dataclass(frozen=True)
class Skipped:
    variant: str
    reason: str


def _select(kind: str, requested: tuple[str, ...] | None, variants: dict, build: Callable, strict: bool = True) -> tuple[list, list[Skipped]]:
    """The variants to run, and those left out with why; ``strict``: a requested one that cannot run is an error."""
    if requested is not None:
        unknown = [name for name in requested if name not in variants]
        if unknown:
            raise ValueError(f"unknown {kind}(s) {', '.join(unknown)}; choose from {', '.join(variants)}")
    chosen, skipped = [], []
    for name in dict.fromkeys(requested) if requested is not None else variants:
        try:
            chosen.append(build(variants[name]))
        except Unavailable as error:
            if requested is not None and strict:
                raise ValueError(str(error)) from None
            skipped.append(Skipped(f"{kind} {name}", str(error)))
    return chosen, skipped


def plan(settings: EvalConfig) -> tuple[list[RetrieverSpec], list[GeneratorSpec], list[Skipped]]:
    """The retrievers and generators to cross, and the default variants left out (with why)."""
    if settings.split not in SPLITS:
        raise ValueError(f"unknown split {settings.split!r}; choose one of {', '.join(SPLITS)}")
    check_split_unit(settings.split_by)
    given = [flag for flag, value in (("--corpus", settings.corpus), ("--index", settings.index), ("--corpus-from-qa", settings.corpus_from_qa)) if value]
    if len(given) > 1:
        raise ValueError(f"give one of --corpus, --index and --corpus-from-qa, not {' and '.join(given)}")
    per_model = Artifacts.per_model(settings)
    first = next(iter(per_model.values()))  # the embedder (dense-ft) is the same for every model
    retrievers, skipped_r = _select("retriever", settings.retrievers, RETRIEVERS, lambda variant: variant(first))
    several = len(per_model) > 1
    # Each model gets the adaptations it has artifacts for: those trained from it, as their run.json says.
    generators, skipped_g = [], []
    for model, trained in per_model.items():
        config = settings.rag.override({"generator": model})
        specs, skipped = _select("generator", settings.generators, GENERATORS, lambda variant: variant(config, trained), strict=not several)
        if several:
            specs = [spec.labelled(model_label(model)) for spec in specs]
            skipped = [Skipped(f"{s.variant}@{model_label(model)}", s.reason) for s in skipped]
        generators += specs
        skipped_g += skipped
    missing = [name for name in settings.generators or () if not any(spec.name.partition("@")[0] == name for spec in generators)]
    if missing:  # with several models, a requested variant must run for at least one
        raise ValueError(f"generator(s) {', '.join(missing)} cannot run for any model: " + "; ".join(s.reason for s in skipped_g))
    # Each variant is scored only the way it was trained (GeneratorSpec.crosses): one no retriever given fits is left out.
    uncrossed = [g for g in generators if not any(g.crosses(r) for r in retrievers)]
    skipped_g += [Skipped(f"generator {g.name}", g.retrievers_needed) for g in uncrossed]
    generators = [g for g in generators if g not in uncrossed]
    return retrievers, generators, skipped_r + skipped_g


def ranking_only(settings: EvalConfig, crossed: list[RetrieverSpec]) -> list[RetrieverSpec]:
    """The ``--ranking-only`` retrievers (those of ``crossed``, scored with answers as well, left out): each must rank."""
    unranked = [name for name in settings.ranking_only if name in (CLOSED_BOOK, WHOLE_CORPUS)]
    if unranked:
        ranking = ", ".join(name for name in RETRIEVERS if name not in (CLOSED_BOOK, WHOLE_CORPUS))
        raise ValueError(f"--ranking-only {', '.join(unranked)}: ranks nothing, so it has no recall or MRR; choose among {ranking}")
    first = next(iter(Artifacts.per_model(settings).values()))
    specs, _ = _select("retriever", settings.ranking_only, RETRIEVERS, lambda variant: variant(first))
    answered = {spec.name for spec in crossed}
    return [spec for spec in specs if spec.name not in answered]


def model_label(model: str) -> str:
    """A generator model spec as a variant suffix: the package name, or the folder's name."""
    return model.removeprefix("package:").rstrip("/").rsplit("/", 1)[-1]
