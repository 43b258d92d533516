"""Fine-tuned artifacts an eval run scores: which flag takes which folder, and the training cost its run.json records.

    >>> artifact_flag("soft_prompt")
    '--soft-prompt'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from rag.eval.config import ARTIFACT_FIELDS, MODEL_ARTIFACT_FIELDS, EvalConfig
from rag.finetune.config import CLOSED_BOOK_OBJECTIVE, MODE_DEFAULTS, PREPROMPT_OBJECTIVE
from rag.models import ModelSource
from rag.runtime import folder_bytes


@dataclass(frozen=True)
class Artifact:
    """A fine-tuned folder, the training cost and data its ``run.json`` records (None where it has none)."""

    flag: str
    path: str
    mode: str | None
    wall_seconds: float | None
    trainable_params: int | None
    artifact_bytes: int
    train_questions: tuple[str, ...] | None = None  # rag.qa.question_fingerprint of its training queries
    seed: int | None = None  # its split: rag.finetune --seed and --val-fraction
    val_fraction: float | None = None
    fingerprint: str = ""  # of run.json, else of the weight files: changes when the folder is retrained
    base_model: str | None = None  # the model it was trained from (run.json), None if unrecorded
    folds: int | None = None  # cross-validation: trained on every fold of folds but fold
    fold: int | None = None
    train_documents: tuple[str, ...] | None = None  # rag.qa.question_fingerprint of its training examples' documents
    split_by: str = "question"  # rag.finetune --split-by

    def describe_split(self) -> str:
        folds = f", folds {self.folds}, fold {self.fold}" if self.folds is not None else ""
        return f"seed {self.seed}, val_fraction {self.val_fraction}{folds}, split by {self.split_by}"


def artifact_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class ArtifactKind:
    """What a flag's folder must be: its marker file, its PEFT type, and the rag.finetune run that makes one."""

    marker: str  # the file every folder of this kind holds
    peft_type: str | None  # the PEFT type an adapter folder must declare; None for a model folder
    mode: str  # the rag.finetune mode that makes it
    objective: str | None = None  # the objective it must have been trained with, for the one way it is scored

    @property
    def command(self) -> str:
        named = self.objective and self.objective != MODE_DEFAULTS[self.mode].objective
        return f"python -m rag.finetune {self.mode}" + (f" --objective {self.objective}" if named else "")


ARTIFACT_KINDS = {
    "--embedder": ArtifactKind("config.json", None, "embeddings"),
    "--adapter": ArtifactKind("adapter_config.json", "LORA", "lora"),
    "--soft-prompt": ArtifactKind("adapter_config.json", "PROMPT_TUNING", "prompt-tuning"),
    "--generator": ArtifactKind("config.json", None, "full"),
    "--closed-book-adapter": ArtifactKind("adapter_config.json", "LORA", "lora", CLOSED_BOOK_OBJECTIVE),
    "--closed-book-generator": ArtifactKind("config.json", None, "full", CLOSED_BOOK_OBJECTIVE),
    "--scratch-generator": ArtifactKind("config.json", None, "scratch", CLOSED_BOOK_OBJECTIVE),
    "--preprompt-adapter": ArtifactKind("adapter_config.json", "LORA", "lora", PREPROMPT_OBJECTIVE),
    "--preprompt-generator": ArtifactKind("config.json", None, "full", PREPROMPT_OBJECTIVE),
}


def load_artifact(flag: str, path: str) -> Artifact:
    """Check that ``path`` is the kind of folder ``flag`` takes; the error names both."""
    kind = ARTIFACT_KINDS[flag]
    command = kind.command
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag} {path}: no such folder; make one with `{command}`")
    if not (folder / kind.marker).is_file():
        raise ValueError(f"{flag} {path}: not a fine-tuned folder (no {kind.marker}); make one with `{command}`")
    if kind.peft_type:
        found = json.loads((folder / kind.marker).read_text(encoding="utf-8")).get("peft_type")
        if found != kind.peft_type:
            raise ValueError(f"{flag} {path}: holds a {found} adapter, expected {kind.peft_type}; make one with `{command}`")
    run, fingerprint = {}, ""
    if (folder / "run.json").is_file():
        text = (folder / "run.json").read_text(encoding="utf-8")
        fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        try:
            run = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{flag} {path}: run.json is not valid JSON ({error})") from error
    else:  # no record: the weights themselves tell a retrained folder apart
        fingerprint = ModelSource(path, folder).fingerprint()
    hyperparameters = run.get("hyperparameters") or {}
    if kind.objective and hyperparameters.get("objective", kind.objective) != kind.objective:
        raise ValueError(f"{flag} {path}: trained with --objective {hyperparameters['objective']}, not {kind.objective} (how it is scored); "
                         f"make one with `{command}`")
    size = run.get("artifact_bytes") or folder_bytes(folder)
    trained_on, documents = run.get("train_questions"), run.get("train_documents")
    return Artifact(
        flag, str(folder), run.get("mode"), run.get("wall_seconds"), run.get("trainable_params"), size,
        tuple(sorted(trained_on)) if trained_on is not None else None,
        run.get("seed"), hyperparameters.get("val_fraction"), fingerprint, run.get("base_model"), run.get("folds"), run.get("fold"),
        tuple(documents) if documents is not None else None, hyperparameters.get("split_by", "question"),
    )


def given_folders(settings: EvalConfig, name: str) -> tuple[str, ...]:
    """The folders given for the artifact field ``name`` (one for the embedder, one per model for the others)."""
    value = getattr(settings, name)
    return (value,) if isinstance(value, str) else tuple(value or ())


def trained_from(artifacts: list[Artifact], model: str, models: tuple[str, ...]) -> Artifact | None:
    """The one of ``artifacts`` trained from ``model``; one without a record counts as trained from ``models[0]``."""
    for artifact in artifacts:
        if artifact.base_model and artifact.base_model not in models:
            raise ValueError(
                f"{artifact.flag} {artifact.path} was trained from {artifact.base_model}, which this eval does not score "
                f"({', '.join(models)}): add it to --models"
            )
    matching = [a for a in artifacts if (a.base_model or models[0]) == model]
    if len(matching) > 1:
        raise ValueError(f"{matching[0].flag}: {', '.join(a.path for a in matching)} were all trained from {model}; give one per model")
    return matching[0] if matching else None


class Unavailable(Exception):
    """A variant that cannot run with what was given (skipped by default, an error if asked for)."""


@dataclass(frozen=True)
class Artifacts:
    embedder: Artifact | None = None
    adapter: Artifact | None = None
    soft_prompt: Artifact | None = None
    generator: Artifact | None = None
    closed_book_adapter: Artifact | None = None
    closed_book_generator: Artifact | None = None
    scratch_generator: Artifact | None = None
    preprompt_adapter: Artifact | None = None
    preprompt_generator: Artifact | None = None
    has_corpus: bool = False

    @classmethod
    def per_model(cls, settings: EvalConfig) -> dict[str, Artifacts]:
        """Each generator model of ``settings`` (its ``models``, else the pipeline's) with the artifacts trained from it.

        Every folder is read once, whatever the number of models.
        """
        models = tuple(dict.fromkeys(settings.models or (settings.rag.generator,)))
        loaded = {name: [load_artifact(artifact_flag(name), path) for path in given_folders(settings, name)] for name in ARTIFACT_FIELDS}
        has_corpus = bool(settings.corpus or settings.index or settings.corpus_from_qa)
        return {model: cls.matching(loaded, model, models, has_corpus) for model in models}

    @classmethod
    def matching(cls, loaded: dict[str, list[Artifact]], model: str, models: tuple[str, ...], has_corpus: bool) -> Artifacts:
        """Of the ``loaded`` folders per field, the embedder and those trained from ``model``."""
        chosen = {name: trained_from(loaded.get(name, []), model, models) for name in MODEL_ARTIFACT_FIELDS}
        return cls(embedder=next(iter(loaded.get("embedder", [])), None), **chosen, has_corpus=has_corpus)

    def require(self, name: str, variant: str) -> Artifact:
        artifact = getattr(self, name)
        if artifact is None:
            flag = artifact_flag(name)
            raise Unavailable(f"{variant} needs {flag} DIR (made by `{ARTIFACT_KINDS[flag].command}`)")
        return artifact
