"""The evaluation matrix: which retrievers and generators to cross, and the artifacts they need.

Retrievers: ``none`` (closed book), ``bm25``, ``dense``, ``dense-ft`` (dense
search of a second index embedded with the fine-tuned embedder) and ``hybrid``.
Generators: ``base`` (zero-shot), ``fewshot`` (preprompt and
:data:`FEW_SHOT_EXAMPLES` examples), ``lora``, ``soft-prompt`` and ``full``
(fine-tuned with ``python -m rag.finetune``). Each variant is a small function
picked by name, so the matrix reads as the paper grid of Ovadia et al. (2024,
"Fine-tuning or retrieval? Comparing knowledge injection in LLMs") and RAFT
(Zhang et al., 2024): retrieval x adaptation.

Left to the defaults, every combination whose artifacts were given runs and the
others are listed as skipped; a variant named explicitly whose artifact is
missing is an error naming the flag.

    >>> settings = EvalConfig("corpora/vellmar-qa.jsonl", "reports/x", corpus=("corpora/vellmar",))
    >>> settings = settings.override({"retrievers": "none,bm25"})
    >>> settings.retrievers
    ('none', 'bm25')
    >>> [spec.name for spec in plan(settings)[0]]
    ['none', 'bm25']
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rag.config import Config
from rag.models import folder_bytes

ROOT = Path(__file__).resolve().parents[2]
PROBE_FILE = ROOT / "corpora" / "probes" / "general-knowledge.jsonl"
FEW_SHOT_EXAMPLES = 4
SPLITS = ("all", "val", "train")


@dataclass(frozen=True)
class EvalConfig:
    """Everything one ``python -m rag.eval`` run needs; ``rag`` holds the shared pipeline config."""

    qa: str  # SQuAD v1.1 JSON or JSONL {"question", "answers", "source"?}
    out: str  # report folder; predictions.jsonl there makes a rerun resume
    corpus: tuple[str, ...] = ()  # folders or files ingested into OUT/index
    index: str | None = None  # an existing index instead of a corpus
    corpus_from_qa: bool = False  # the QA set's own contexts (SQuAD paragraphs) are the corpus
    retrievers: tuple[str, ...] | None = None  # None: every retriever whose artifacts exist
    generators: tuple[str, ...] | None = None  # None: every generator whose artifacts exist
    embedder: str | None = None  # fine-tuned sentence-transformers folder (dense-ft)
    adapter: str | None = None  # LoRA folder (lora)
    soft_prompt: str | None = None  # prompt-tuning folder (soft-prompt)
    generator: str | None = None  # fully fine-tuned generator folder (full)
    limit: int | None = None  # evaluate a seeded sample of this many questions (and probes)
    split: str = "all"  # all | val | train, the same hash split as rag.finetune (val_fraction 0.25, seed 0)
    seed: int = 0  # for the --limit sample and the bootstrap
    k: int = 10  # retrieval metrics at 1..k; the prompt gets the rag config's k passages
    probe: str = str(PROBE_FILE)  # general-knowledge questions for forgetting; "" skips the probe
    bootstrap_resamples: int = 1000
    rag: Config = field(default_factory=lambda: Config(max_new_tokens=32))  # short answers need few tokens

    def override(self, values: dict[str, Any]) -> EvalConfig:
        """A copy with ``values`` applied (comma strings accepted for lists); unknown keys raise."""
        valid = [f.name for f in fields(self) if f.name != "rag"]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown eval setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
        values = dict(values)
        for key in ("corpus", "retrievers", "generators"):
            if isinstance(values.get(key), str):
                values[key] = [part.strip() for part in values[key].split(",") if part.strip()]
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


# ---------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class Artifact:
    """A fine-tuned folder and the training cost its ``run.json`` records (None where it has none)."""

    flag: str
    path: str
    mode: str | None
    wall_seconds: float | None
    trainable_params: int | None
    artifact_bytes: int


ARTIFACT_FIELDS = ("embedder", "adapter", "soft_prompt", "generator")  # EvalConfig fields naming fine-tuned folders


def artifact_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# flag -> (file that marks a valid folder, PEFT type it must hold or None, command that makes one)
ARTIFACT_KINDS = {
    "--embedder": ("config.json", None, "python -m rag.finetune embeddings"),
    "--adapter": ("adapter_config.json", "LORA", "python -m rag.finetune lora"),
    "--soft-prompt": ("adapter_config.json", "PROMPT_TUNING", "python -m rag.finetune prompt-tuning"),
    "--generator": ("config.json", None, "python -m rag.finetune full"),
}


def load_artifact(flag: str, path: str) -> Artifact:
    """Check that ``path`` is the kind of folder ``flag`` takes; the error names both."""
    marker, peft_type, command = ARTIFACT_KINDS[flag]
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag} {path}: no such folder; make one with `{command}`")
    if not (folder / marker).is_file():
        raise ValueError(f"{flag} {path}: not a fine-tuned folder (no {marker}); make one with `{command}`")
    if peft_type:
        found = json.loads((folder / marker).read_text(encoding="utf-8")).get("peft_type")
        if found != peft_type:
            raise ValueError(f"{flag} {path}: holds a {found} adapter, expected {peft_type}; make one with `{command}`")
    run = {}
    if (folder / "run.json").is_file():
        try:
            run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{flag} {path}: run.json is not valid JSON ({error})") from error
    size = run.get("artifact_bytes") or folder_bytes(folder)
    return Artifact(flag, str(folder), run.get("mode"), run.get("wall_seconds"), run.get("trainable_params"), size)


class Unavailable(Exception):
    """A variant that cannot run with what was given (skipped by default, an error if asked for)."""


@dataclass(frozen=True)
class Artifacts:
    embedder: Artifact | None = None
    adapter: Artifact | None = None
    soft_prompt: Artifact | None = None
    generator: Artifact | None = None
    has_corpus: bool = False

    @classmethod
    def of(cls, settings: EvalConfig) -> Artifacts:
        given = {name: getattr(settings, name) for name in ARTIFACT_FIELDS}
        loaded = {name: load_artifact(artifact_flag(name), path) if path else None for name, path in given.items()}
        return cls(**loaded, has_corpus=bool(settings.corpus or settings.index or settings.corpus_from_qa))

    def require(self, name: str, variant: str) -> Artifact:
        artifact = getattr(self, name)
        if artifact is None:
            flag = artifact_flag(name)
            raise Unavailable(f"{variant} needs {flag} DIR (made by `{ARTIFACT_KINDS[flag][2]}`)")
        return artifact


# ---------------------------------------------------------------------------- retrievers


@dataclass(frozen=True)
class RetrieverSpec:
    name: str
    method: str | None  # a rag.retrieve method; None = closed book
    fine_tuned_index: bool = False  # search OUT/index-ft, embedded with the fine-tuned embedder
    artifact: Artifact | None = None


def _needs_corpus(artifacts: Artifacts, name: str) -> None:
    if not artifacts.has_corpus:
        raise Unavailable(f"retriever {name} needs a corpus: give --corpus DIR..., --index DIR or --corpus-from-qa")


CLOSED_BOOK = RetrieverSpec("none", None)


def closed_book(artifacts: Artifacts) -> RetrieverSpec:
    return CLOSED_BOOK


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


RETRIEVERS: dict[str, Callable[[Artifacts], RetrieverSpec]] = {
    "none": closed_book,
    "bm25": bm25,
    "dense": dense,
    "dense-ft": dense_fine_tuned,
    "hybrid": hybrid,
}


# ---------------------------------------------------------------------------- generators


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    config: Config  # the prompt and generation config for this generator
    adapter: str | None = None  # PEFT folder (LoRA or soft prompt)
    artifact: Artifact | None = None

    @property
    def fine_tuned(self) -> bool:
        return self.artifact is not None

    @property
    def weights(self) -> tuple[str, str | None]:
        """What has to be loaded: variants that differ only in their prompt share one model."""
        return self.config.generator, self.adapter


def base(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return GeneratorSpec("base", config.override({"few_shot": 0}))


def fewshot(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    return GeneratorSpec("fewshot", config.override({"few_shot": FEW_SHOT_EXAMPLES}))


def lora(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    artifact = artifacts.require("adapter", "generator lora")
    return GeneratorSpec("lora", config.override({"few_shot": 0}), artifact.path, artifact)


def soft_prompt(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    artifact = artifacts.require("soft_prompt", "generator soft-prompt")
    return GeneratorSpec("soft-prompt", config.override({"few_shot": 0}), artifact.path, artifact)


def full(config: Config, artifacts: Artifacts) -> GeneratorSpec:
    artifact = artifacts.require("generator", "generator full")
    return GeneratorSpec("full", config.override({"few_shot": 0, "generator": artifact.path}), None, artifact)


GENERATORS: dict[str, Callable[[Config, Artifacts], GeneratorSpec]] = {
    "base": base,
    "fewshot": fewshot,
    "lora": lora,
    "soft-prompt": soft_prompt,
    "full": full,
}


# ---------------------------------------------------------------------------- the plan


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
    generators, skipped_g = _select("generator", settings.generators, GENERATORS, lambda variant: variant(settings.rag, artifacts))
    return retrievers, generators, skipped_r + skipped_g
