"""Fine-tuned artifacts an eval run scores: which flag takes which folder, and the training cost its run.json records.

    >>> artifact_flag("soft_prompt")
    '--soft-prompt'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rag.eval.config import EvalConfig
from rag.runtime import folder_bytes


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
