"""Benchmark ingest, ANN search, retrieval and generation, and LangChain's path on the same corpus and encoder.

Run from the repository root (every model comes from an installed package; nothing is downloaded):

    .venv/bin/python bench/bench.py --json reports/bench.json        # full run: ~1000 chunks, ANN at 100k sentences
    .venv/bin/python bench/bench.py --quick                           # every section at small sizes, under 5 minutes
    .venv/bin/python bench/bench.py --ann-size 50000 --ann-queries 500
    .venv/bin/python bench/bench.py --set embed_batch_size=32         # any config key

Sections, in order (each prints its figures as soon as it ends; bench/README.md says what each means):

1. ingest: ``rag.ingest.ingest`` on N copies of the corpus with a preloaded embedder, the fastest of
   ``--runs``, against its own encoding time (goal: ingest within 15% of encoding) and beside the raw
   ``encode`` of exactly the chunks it stored, run alone;
2. encoder precision: bf16 against fp32 ``encode`` throughput on the same chunks;
3. LangChain: its loaders, ``RecursiveCharacterTextSplitter``, ``HuggingFaceEmbeddings`` and FAISS
   store on the same files and encoder folder, end to end, and the ratio to ours (goal >= 1.0x);
4. ANN: flat, HNSW and IVF over ``--ann-size`` real sentences (bench/ann.py), each search setting's
   p50 latency beside its recall@10 against exact search (goal: >= 0.95 at p50 <= 1 ms);
5. retrieval latency: single-question p50/p95 through ``Retriever.search`` on the ingested index;
6. generator: time to first token and tokens/s streaming one RAG prompt; prefix reuse (time to
   first token and questions/s with the shared prefix prefilled each time or kept once); the eval
   path (batched, configured precision, prefix reuse; whole passages or sentences) against the
   naive loop (one at a time, fp32), in questions/s and F1 (goal: >= 3x);
7. training: a LoRA step (forward and backward, as ``rag.finetune`` runs it) on the lab's supervised prompts
   in fp32 and in bf16 (``--precision``), and in bf16 with the other LoRA dropout (``--lora-dropout``: drawing
   its masks is a large share of a CPU step), seconds a step, tokens/s and the validation loss of each;
8. peak resident memory after every section.
"""

from __future__ import annotations

import os

# Before any Hugging Face import: HuggingFaceEmbeddings takes a model *name* and would otherwise
# ask the Hub for metadata before falling back to the local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import dataclasses
import json
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import ann
import torch
from timing import percentiles_ms, timed

from rag.cli_common import add_config_flags, config_from_args, run_cli
from rag.config import WHOLE_CORPUS, Config
from rag.embed import embed_texts, load_embedder
from rag.eval.metrics import token_f1
from rag.generate import Generator
from rag.index import Index
from rag.ingest import Changes, IngestSummary, ToRead, discover, ingest, load_and_chunk
from rag.models import embedder_source, resolve_device, resolve_dtype
from rag.passage import Chunk
from rag.prompt import answer_text, build_prompt, load_few_shot
from rag.qa import QAItem, load_qa
from rag.retrieve import RETRIEVAL_METHODS, Retriever
from rag.runtime import peak_rss_mb

REPO = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = REPO / "corpora" / "vellmar-qa.jsonl"
INGEST_GOAL = 0.15  # the goal: ingest at most 15% slower than raw encoding
BATCH_GOAL = 3.0  # the eval issue's goal: >= 3x the questions/s of one-at-a-time generation
ANN_RECALL_GOAL, ANN_P50_GOAL_MS = 0.95, 1.0  # issue #13: recall@10 >= 0.95 of exact at p50 <= 1 ms, search alone
HNSW_EF_SEARCH = (16, 32, 64, 128, 256)  # the values of each search setting the ANN section sweeps
IVF_NPROBE = (1, 8, 16, 32, 64, 128)
SECTIONS = ("ingest", "ann", "generation", "training")  # ingest: + precision + LangChain; generation: + retrieval latency
FEW_SHOT_EXAMPLES = 4  # as the eval's fewshot variant
# Units by a marker in the figure's name, first match wins.
UNITS = (("_per_s", "per second"), ("qps", "questions/s"), ("_ms", "ms"), ("_s_", "s"), ("seconds", "s"), ("_mb", "MiB"), ("_pct", "%"),
         ("speedup", "x"), ("_over_", "x"), ("recall", "fraction of the exact top 10"), ("f1", "token F1"), ("tokens", "tokens"))


# ---------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class IngestFigures:
    corpus: str
    copies: int
    files: int
    chunks: int
    runs: int  # ingests timed; the fastest is reported (the others were slowed by something else)
    ingest_s: float
    ingest_chunks_per_s: float
    encode_in_ingest_s: float  # the same run's embed_texts call
    overhead_pct: float  # (ingest_s / encode_in_ingest_s - 1) * 100, within one run; goal <= 15
    raw_encode_s: float  # embed_texts (SentenceTransformer.encode) on the same chunk texts, alone, after
    raw_encode_chunks_per_s: float
    load_chunk_s: float  # loading and chunking the same files alone
    write_other_s: float  # by difference within the run: discovery, hashing, SQLite, FAISS, BM25, fsync


@dataclass(frozen=True)
class PrecisionFigures:
    chunks: int
    bf16_chunks_per_s: float
    fp32_chunks_per_s: float
    bf16_speedup: float


@dataclass(frozen=True)
class LangChainFigures:
    precision: str  # the encoder dtype, set to ours so the ratio measures the pipelines
    files: int = 0
    chunks: int = 0
    seconds: float = 0.0  # load + split + embed + FAISS.from_documents
    chunks_per_s: float = 0.0
    ours_over_langchain: float = 0.0  # ingest chunks/s divided by LangChain's chunks/s
    skipped: list[str] = ()  # files a LangChain loader could not read, with the reason
    error: str = ""  # set when a LangChain piece failed offline; the other figures are then 0


@dataclass(frozen=True)
class LatencyRow:
    index_type: str
    chunks: int
    method: str  # dense | bm25 | hybrid through Retriever.search, or faiss-only
    queries: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class StreamFigures:
    prompt_tokens: int
    new_tokens: int  # the streamed text re-tokenized, so +-1 token
    first_token_s: float  # from stream() called to the first non-empty piece (prefill + 1 token)
    decode_tokens_per_s: float  # after the first piece
    total_s: float


@dataclass(frozen=True)
class PrefixFigures:
    prompts: str  # "rag" (question + passages), "fewshot" (FEW_SHOT_EXAMPLES examples before) or "corpus" (the corpus before)
    questions: int
    mean_prompt_tokens: int
    shared_prefix_tokens: int  # the prefix the generator kept and reused
    first_token_s_full: float  # mean over the questions, one at a time: full prefill + 1 token
    first_token_s_reused: float  # the same with the kept prefix
    qps_full: float  # questions/s, batches of generation_batch_size, no reuse
    qps_reused: float


@dataclass(frozen=True)
class EvalPathRow:
    prompts: str  # rag | fewshot
    arm: str  # naive: one at a time, fp32, whole passages, no reuse; eval-*: batched, configured precision, reuse
    context: str  # passages | sentences
    precision: str
    batch_size: int
    questions: int
    mean_prompt_tokens: int
    qps: float
    speedup: float  # over the naive arm of the same prompts; goal >= 3
    f1: float  # mean token F1 of the answers against the gold ones


@dataclass(frozen=True)
class TrainingRow:
    precision: str  # rag.finetune --precision: the dtype the loss is computed in
    lora_dropout: float  # rag.finetune --lora-dropout
    steps: int
    batch_size: int
    mean_sequence_tokens: int
    step_s: float  # median of the timed steps: forward and backward of a batch, one sequence at a time as on a CPU
    tokens_per_s: float
    speedup: float  # the first row's step_s over this one's
    val_loss: float  # on the same validation sequences in each row, untrained: how much bf16 moves the loss
    # Dropout masks drawn in the timed steps (one per adapted projection and sequence where dropout is on): 0 with
    # dropout on would mean the steps ran in eval mode, without the masks the trainer draws.
    dropout_masks: int


@dataclass(frozen=True)
class MemoryFigures:
    phase: str
    peak_rss_mb: float  # ru_maxrss: the process peak so far, so it only grows
    rss_mb: float  # resident now


# ---------------------------------------------------------------------------- measuring


def memory(phase: str) -> MemoryFigures:
    import psutil

    return MemoryFigures(phase, round(peak_rss_mb(), 1), round(psutil.Process().memory_info().rss / 2**20, 1))


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


# ---------------------------------------------------------------------------- corpus


def load_and_chunk_files(files: list[Path], tokenizer, config: Config) -> list[Chunk]:
    """The load and chunk steps of ingest alone (unreadable files are passed over, as ingest does)."""
    changes = Changes(to_read=[ToRead(path, path.read_bytes(), "") for path in files])
    return load_and_chunk(changes, None, tokenizer, config, IngestSummary(""), show_progress=False)[0]


def marked_copy(data: bytes, suffix: str, copy: int) -> bytes:
    """The file's bytes with a line naming the copy, so each copy hashes differently."""
    if suffix.lower() == ".pdf":
        return data + f"\n% bench copy {copy}\n".encode()  # a comment after %%EOF: readers ignore it
    if suffix.lower() in (".html", ".htm"):
        return f"<!-- bench copy {copy} -->\n".encode() + data
    return f"(bench copy {copy})\n\n".encode() + data


def replicate_corpus(files: list[Path], root: Path, dest: Path, copies: int) -> list[Path]:
    """``copies`` copies of ``files`` (found under ``root``) in ``dest``, renamed name.copyNNNN.ext."""
    written = []
    for copy in range(copies):
        for path in files:
            relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
            target = dest / relative.parent / f"{relative.stem}.copy{copy:04d}{relative.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(marked_copy(path.read_bytes(), path.suffix, copy))
            written.append(target)
    return written


# ---------------------------------------------------------------------------- 1-2. ingest and encoding


def bench_ingest(corpus: Path, copies: int, min_chunks: int, work: Path, config: Config, embedder, runs: int) -> IngestFigures:
    files, _ = discover([corpus])
    if copies <= 0:  # auto: enough copies for min_chunks
        per_copy = len(load_and_chunk_files(files, embedder.tokenizer, config))
        copies = max(1, math.ceil(min_chunks / max(per_copy, 1)))
    copied = replicate_corpus(files, corpus.resolve(), work / "corpus", copies)

    # The CPU's speed drifts by 10-20% between minute-long runs on this machine: the fastest of a few is the figure.
    summary = min((ingest([work / "corpus"], work / f"index-{run}", config, embedder=embedder) for run in range(runs)), key=lambda s: s.seconds)
    for run in range(1, runs):
        shutil.rmtree(work / f"index-{run}")
    texts = [chunk.text for chunk in Index.open(work / "index-0").chunks()]
    _, encode_s = timed(embed_texts, embedder, texts, config.embed_batch_size)
    _, load_chunk_s = timed(load_and_chunk_files, copied, embedder.tokenizer, config)
    return IngestFigures(
        corpus=str(corpus),
        copies=copies,
        files=summary.files_read,
        chunks=summary.chunks_total,
        runs=runs,
        ingest_s=round(summary.seconds, 2),
        ingest_chunks_per_s=rate(summary.chunks_total, summary.seconds),
        encode_in_ingest_s=round(summary.embed_seconds, 2),
        overhead_pct=round((summary.seconds / summary.embed_seconds - 1) * 100, 1),
        raw_encode_s=round(encode_s, 2),
        raw_encode_chunks_per_s=rate(len(texts), encode_s),
        load_chunk_s=round(load_chunk_s, 2),
        write_other_s=round(summary.seconds - summary.embed_seconds - load_chunk_s, 2),
    )


def bench_precision(texts: list[str], config: Config, embedder) -> PrecisionFigures:
    """bf16 against fp32 encode on the same texts; ``embedder`` is reused for whichever it already is."""
    speeds = {}
    device = resolve_device(config.device)
    for precision in ("bf16", "fp32"):
        same = resolve_dtype(precision, device) == resolve_dtype(config.embed_precision, device, "embed_precision")
        model = embedder if same else load_embedder(config.override({"embed_precision": precision}))
        embed_texts(model, texts[:8], config.embed_batch_size)  # warm-up: first call allocates
        _, seconds = timed(embed_texts, model, texts, config.embed_batch_size)
        speeds[precision] = rate(len(texts), seconds)
    return PrecisionFigures(len(texts), speeds["bf16"], speeds["fp32"], round(speeds["bf16"] / speeds["fp32"], 2))


# ---------------------------------------------------------------------------- 3. LangChain


def langchain_loader(path: Path):
    from langchain_community.document_loaders import BSHTMLLoader, PyPDFLoader, TextLoader

    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return PyPDFLoader(str(path))
    if suffix in (".html", ".htm"):
        # Its default parser is lxml, which is not installed; bs4's own parser is what rag uses too.
        return BSHTMLLoader(str(path), open_encoding="utf-8", bs_kwargs={"features": "html.parser"})
    return TextLoader(str(path), encoding="utf-8")


def bench_langchain(files: list[Path], config: Config, ours_chunks_per_s: float, runs: int) -> LangChainFigures:
    """LangChain's documented path, end to end, with model loading kept out of the timing as for ours; the fastest of ``runs``."""
    dtype = resolve_dtype(config.embed_precision, resolve_device(config.device), "embed_precision")
    precision = str(dtype).removeprefix("torch.")
    try:
        with warnings.catch_warnings():  # langchain-community warns at import that it is being sunset
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community.vectorstores import FAISS
        from langchain_huggingface import HuggingFaceEmbeddings
        from langchain_text_splitters import RecursiveCharacterTextSplitter
        from transformers import AutoTokenizer

        folder = str(embedder_source(config.embedder).folder)
        embeddings = HuggingFaceEmbeddings(
            model_name=folder,
            model_kwargs={"device": resolve_device(config.device), "local_files_only": True, "model_kwargs": {"dtype": dtype}},
            encode_kwargs={"normalize_embeddings": True, "batch_size": config.embed_batch_size},
        )
        splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            AutoTokenizer.from_pretrained(folder), chunk_size=config.chunk_tokens, chunk_overlap=config.chunk_overlap
        )
        embeddings.embed_documents(["warm up"] * 8)

        def run() -> tuple[float, list, list[str]]:
            began = time.perf_counter()
            documents, skipped = [], []
            for path in files:
                try:
                    documents += langchain_loader(path).load()
                except Exception as error:  # noqa: BLE001 -- any loader failure is a skipped file, as in ours
                    skipped.append(f"{path.name}: {type(error).__name__}: {error}")
            pieces = splitter.split_documents(documents)
            FAISS.from_documents(pieces, embeddings)
            return time.perf_counter() - began, pieces, skipped

        seconds, pieces, skipped = min((run() for _ in range(runs)), key=lambda result: result[0])
    except Exception as error:  # noqa: BLE001 -- report and go on with the other phases
        return LangChainFigures(precision, error=f"{type(error).__name__}: {error}")
    speed = rate(len(pieces), seconds)
    return LangChainFigures(
        precision,
        files=len(files) - len(skipped),
        chunks=len(pieces),
        seconds=round(seconds, 2),
        chunks_per_s=speed,
        ours_over_langchain=round(ours_chunks_per_s / speed, 2) if speed else 0.0,
        skipped=skipped,
    )


# ---------------------------------------------------------------------------- 4. retrieval latency


def load_questions(path: Path, chunks: list[Chunk], count: int) -> list[str]:
    """``count`` questions, cycling through the QA file (or, without one, the first words of chunks)."""
    if path.is_file():
        from rag.qa import load_qa

        pool = [item.question for item in load_qa(path)]
    else:  # another corpus without a QA set: a chunk's opening words make a fair keyword query
        pool = [" ".join(chunk.text.split()[:12]) for chunk in chunks[:count]]
    return [pool[i % len(pool)] for i in range(count)]


def latency_rows(retriever: Retriever, questions: list[str]) -> list[LatencyRow]:
    """p50/p95 of one question at a time through Retriever.search, per method, and of FAISS alone."""
    index, config = retriever.index, retriever.config
    timings = {}
    for method in (m for m in RETRIEVAL_METHODS if m != WHOLE_CORPUS):  # the corpus method searches nothing
        retriever.search(questions[:1], method, k=config.k)  # warm-up: loads FAISS / BM25 from disk
        timings[method] = [timed(retriever.search, [q], method, config.k)[1] for q in questions]
    vectors = embed_texts(retriever.embedder, questions, config.embed_batch_size)  # (n_questions, dim)
    timings["faiss-only"] = [timed(index.search_vectors, v[None, :], config.k, config)[1] for v in vectors]
    return [
        LatencyRow(index.manifest.index_type, len(index), method, len(seconds), *percentiles_ms(seconds))
        for method, seconds in timings.items()
    ]


def bench_ann(size: int, queries: int, config: Config, embedder) -> list[ann.AnnRow]:
    """Each index type swept over its search setting on ``size`` real sentences, ``queries`` held-out ones as queries."""
    sentences = ann.real_sentences(size + queries)
    vectors = ann.cached_embeddings(sentences, embedder, config)  # (size + queries, dim)
    return ann.sweep(vectors[:size], vectors[size:], config, {"hnsw": list(HNSW_EF_SEARCH), "ivf": list(IVF_NPROBE)})


# ---------------------------------------------------------------------------- 5. generator


def bench_stream(generator: Generator, prompt: list[int]) -> StreamFigures:
    generator.generate([prompt[:16]])  # warm-up: the first forward pass allocates
    began = time.perf_counter()
    first, pieces = None, []
    for piece in generator.stream(prompt):
        if first is None and piece:
            first = time.perf_counter()
        pieces.append(piece)
    done = time.perf_counter()
    first = first or done
    # The streamer yields text, not tokens: count them by re-tokenizing what came out.
    new_tokens = len(generator.tokenizer("".join(pieces), add_special_tokens=False)["input_ids"])
    return StreamFigures(
        prompt_tokens=len(prompt),
        new_tokens=new_tokens,
        first_token_s=round(first - began, 3),
        decode_tokens_per_s=rate(max(new_tokens - 1, 0), done - first),
        total_s=round(done - began, 3),
    )


def precision_of(generator: Generator) -> str:
    return str(generator.model.dtype).removeprefix("torch.")


def first_token_s(generator: Generator, prompts: list[list[int]]) -> float:
    """Mean seconds to the first generated token, one prompt at a time (prefill + one decoding step)."""
    return statistics.fmean(timed(generator.generate_batch, [prompt], max_new_tokens=1)[1] for prompt in prompts)


def qps(generator: Generator, prompts: list[list[int]]) -> float:
    _, seconds = timed(generator.generate, prompts)
    return len(prompts) / seconds


def bench_prefix(generator: Generator, prompts: list[list[int]], kind: str) -> PrefixFigures:
    """Time to first token and questions/s with the shared prefix prefilled each time, and kept once."""
    full = Generator(generator.model, generator.tokenizer, generator.config.override({"min_prefix_tokens": 0}))
    reusing = Generator(generator.model, generator.tokenizer, generator.config)
    full.generate_batch(prompts[:1], max_new_tokens=1)  # warm-up: the first forward pass allocates
    full_qps, reused_qps = qps(full, prompts), qps(reusing, prompts)  # the batched call keeps the prefix
    return PrefixFigures(
        kind,
        len(prompts),
        sum(map(len, prompts)) // len(prompts),
        reusing.kept_prefix_tokens,
        round(first_token_s(full, prompts), 3),
        round(first_token_s(reusing, prompts), 3),
        round(full_qps, 3),
        round(reused_qps, 3),
    )


def mean_f1(generator: Generator, prompts: list[list[int]], items: list[QAItem], one_at_a_time: bool) -> tuple[float, float]:
    """Questions/s and mean token F1 of the answers (the eval's answer_text) against the gold ones."""
    began = time.perf_counter()
    generations = [generator.generate([p])[0] for p in prompts] if one_at_a_time else generator.generate(prompts)
    seconds = time.perf_counter() - began
    f1 = statistics.fmean(token_f1(answer_text(g.text), item.answers) for g, item in zip(generations, items))
    return len(prompts) / seconds, f1


def bench_eval_path(
    generator: Generator, fp32: Generator, items: list[QAItem], hits: list, kind: str, examples, embedder
) -> list[EvalPathRow]:
    """The naive loop against the eval path on the same questions and passages, with whole passages and with sentences."""
    def prompts(model: Generator, context: str) -> list[list[int]]:
        chosen = model.config.override({"context": context})
        return [build_prompt(i.question, found, model.tokenizer, chosen, examples, embedder=embedder).input_ids for i, found in zip(items, hits)]

    naive = Generator(fp32.model, fp32.tokenizer, fp32.config.override({"min_prefix_tokens": 0, "generation_batch_size": 1}))
    naive.generate_batch([prompts(naive, "passages")[0]], max_new_tokens=1)  # warm-up
    arms = [("naive", naive, "passages", True), ("eval", generator, "passages", False), ("eval", generator, "sentences", False)]
    rows: list[EvalPathRow] = []
    for arm, model, context, one_at_a_time in arms:
        fresh = Generator(model.model, model.tokenizer, model.config)  # no prefix kept from an earlier arm
        token_prompts = prompts(fresh, context)
        speed, f1 = mean_f1(fresh, token_prompts, items, one_at_a_time)
        baseline = rows[0].qps if rows else speed
        rows.append(EvalPathRow(
            kind, f"{arm}-{context}", context, precision_of(model), model.config.generation_batch_size, len(items),
            sum(map(len, token_prompts)) // len(token_prompts), round(speed, 3), round(speed / baseline, 2), round(f1, 3),
        ))
    return rows


def training_arms(default_dropout: float) -> list[tuple[str, float]]:
    """(precision, LoRA dropout) pairs timed: fp32 and bf16 at the default dropout, then bf16 at the other value."""
    other = 0.05 if default_dropout == 0 else 0.0
    return [("fp32", default_dropout), ("bf16", default_dropout), ("bf16", other)]


def bench_training(index_dir: Path, questions: str, config: Config, steps: int, batch_size: int) -> list[TrainingRow]:
    """LoRA steps on the lab's supervised prompts (rag.finetune.lora.build, the trainer's batch_loss) in fp32 and
    bf16, and with the other LoRA dropout."""
    from rag.finetune import FinetuneConfig, lora
    from rag.finetune.data import load_data
    from rag.finetune.trainer import batch_loss, training_dtype, validation_loss

    rows: list[TrainingRow] = []
    for precision, dropout in training_arms(FinetuneConfig("lora", "unused").lora_dropout):
        settings = FinetuneConfig("lora", "unused", qa=questions, index=str(index_dir), batch_size=batch_size,
                                  precision=precision, lora_dropout=dropout).resolved()
        task = lora.build(settings, config, load_data(settings, config))
        dtype = training_dtype(settings, resolve_device(config.device))
        batches = [task.train[start : start + batch_size] for start in range(0, (steps + 1) * batch_size, batch_size)]
        seconds, tokens, masks = [], 0, []
        task.model.train()  # as the trainer does (the base model loads in eval mode; only LoRA's new modules start in train mode)
        hooks = [module.register_forward_pre_hook(lambda module, _: masks.append(module.training))
                 for module in task.model.modules() if isinstance(module, torch.nn.Dropout) and module.p > 0]
        for batch in batches:  # the first is a warm-up: its allocations are not timed
            (_, batch_tokens), took = timed(batch_loss, task, batch, True, dtype)
            task.model.zero_grad(set_to_none=True)
            if batch is batches[0]:
                masks.clear()
            else:
                seconds.append(took)
                tokens += batch_tokens
        for hook in hooks:
            hook.remove()
        val_loss = validation_loss(dataclasses.replace(task, val=task.val[:batch_size]), batch_size, dtype)
        step_s = statistics.median(seconds)
        rows.append(TrainingRow(
            precision, dropout, steps, batch_size, tokens // (steps * batch_size), round(step_s, 2),
            round(tokens / sum(seconds), 1), round(rows[0].step_s / step_s if rows else 1.0, 2), round(val_loss, 4), sum(masks),
        ))
        del task
    return rows


# ---------------------------------------------------------------------------- printing


def show(title: str, figures) -> None:
    """One figure per line, named by its field (units are in the names: _s, _ms, _per_s, _mb, _pct)."""
    print(f"\n== {title}")
    for field in fields(figures):
        value = getattr(figures, field.name)
        if isinstance(value, (list, tuple)):
            value = "; ".join(value) or "-"
        print(f"  {field.name:<26} {value}")


def show_table(title: str, rows: list) -> None:
    """Dataclass rows as an aligned table, one column per field."""
    print(f"\n== {title}")
    names = [field.name for field in fields(rows[0])]
    cells = [names] + [[str(getattr(row, name)) for name in names] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    for row in cells:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


# ---------------------------------------------------------------------------- main


# --quick: every section at small sizes (under 5 minutes on 2 quiet cores); explicit flags still win.
QUICK = {"min_chunks": 200, "ann_size": 5000, "ann_queries": 200, "queries": 50, "precision_sample": 64, "max_new_tokens": 16, "gen_prompts": 4,
         "corpus_tokens": 1000, "train_steps": 2, "train_batch": 2}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(REPO / "corpora" / "vellmar"), help="folder of documents to ingest")
    parser.add_argument("--repeat", type=int, default=0, help="copies of the corpus to ingest; 0 = enough for --min-chunks")
    parser.add_argument("--min-chunks", type=int, help="chunk count the automatic --repeat aims for (1000)")
    parser.add_argument("--runs", type=int, default=2, help="ingests (ours and LangChain's) timed; the fastest counts (2)")
    parser.add_argument("--ann-size", type=int, help="real sentences in the ANN indexes (100000); 0 skips the ANN section")
    parser.add_argument("--ann-queries", type=int, help="held-out sentences that query the ANN indexes (1000)")
    parser.add_argument("--queries", type=int, help="single-question searches timed per method (200)")
    parser.add_argument("--questions", default=str(DEFAULT_QUESTIONS), help="QA JSONL whose questions are the queries")
    parser.add_argument("--precision-sample", type=int, help="chunks encoded in bf16 and fp32 (256)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens generated per answer (32)")
    parser.add_argument("--gen-prompts", type=int, help="questions answered per generation figure (8)")
    parser.add_argument("--corpus-tokens", type=int, help="prompt budget of the corpus prompts in the prefix-reuse figures (3000)")
    parser.add_argument("--train-steps", type=int, help="LoRA steps timed per training precision, after one warm-up step (4)")
    parser.add_argument("--train-batch", type=int, help="questions per timed LoRA step (4, as make lab trains)")
    parser.add_argument("--quick", action="store_true", help="every section at small sizes: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--sections", type=sections, default=SECTIONS, help=f"comma list of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--json", help="write every figure, with its unit, the machine and the load, to this file")
    add_config_flags(parser)
    args = parser.parse_args()
    defaults = {"min_chunks": 1000, "ann_size": 100_000, "ann_queries": 1000, "queries": 200, "precision_sample": 256,
                "max_new_tokens": 32, "gen_prompts": 8, "corpus_tokens": 3000, "train_steps": 4, "train_batch": 4}
    for name, value in (QUICK if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def sections(value: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SECTIONS)}")
    return chosen


def unit_of(name: str, value) -> str | None:
    """A figure's unit, read from its name (the dataclasses name every figure with its unit)."""
    for marker, unit in UNITS:
        if marker in name + "_":  # so that "_s_" matches a name ending in "_s"
            return unit
    return "count" if isinstance(value, int) and not isinstance(value, bool) else None


def with_units(figures) -> dict:
    """A dataclass of figures as {name: {"value": v, "unit": u}} for the JSON file."""
    return {name: {"value": value, "unit": unit_of(name, value)} for name, value in asdict(figures).items()}


def goal(label: str, met: bool) -> str:
    return f"  goal: {label}: {'met' if met else 'NOT met'}"


def main() -> int:
    args = parse_args()
    config = config_from_args(args, base=Config(max_new_tokens=args.max_new_tokens))
    report: dict[str, object] = {
        "command": " ".join(sys.argv),
        "machine": {
            "platform": platform.platform(),
            "processor": cpu_name(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": resolve_device(config.device),
            "embed_dtype": str(resolve_dtype(config.embed_precision, resolve_device(config.device))),
            "generator_dtype": str(resolve_dtype(config.generator_precision, resolve_device(config.device))),
            "loadavg_start": os.getloadavg(),
        },
        "config": config.to_dict(),
        "goals": {},
    }
    goals: dict[str, bool] = report["goals"]
    memories = [memory("start")]
    embedder = load_embedder(config)
    embed_texts(embedder, ["warm up"] * 8, config.embed_batch_size)  # first call allocates: keep it out of both timings

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        work = Path(tmp)
        if "ingest" in args.sections:
            ingested = bench_ingest(Path(args.corpus), args.repeat, args.min_chunks, work, config, embedder, args.runs)
            report["ingest"] = with_units(ingested)
            show("ingest (rag.ingest.ingest vs raw encode of the same chunks)", ingested)
            goals["ingest overhead <= 15%"] = ingested.overhead_pct <= INGEST_GOAL * 100
            print(goal(f"overhead <= {INGEST_GOAL:.0%}", goals["ingest overhead <= 15%"]))
            memories.append(memory("ingest"))

            chunks = Index.open(work / "index-0").chunks()
            precision = bench_precision([c.text for c in chunks[: args.precision_sample]], config, embedder)
            report["precision"] = with_units(precision)
            show("encoder precision (embed_precision)", precision)
            memories.append(memory("precision"))

            copies = sorted(path for path in (work / "corpus").rglob("*") if path.is_file())
            langchain = bench_langchain(copies, config, ingested.ingest_chunks_per_s, args.runs)
            report["langchain"] = with_units(langchain)
            show("LangChain (loaders + RecursiveCharacterTextSplitter + HuggingFaceEmbeddings + FAISS)", langchain)
            goals["ingest >= 1.0x LangChain"] = langchain.ours_over_langchain >= 1.0
            print(goal("ours >= 1.0x LangChain's chunks/s", goals["ingest >= 1.0x LangChain"]))
            memories.append(memory("langchain"))
        elif "generation" in args.sections:  # an index to retrieve from, built untimed
            ingest([Path(args.corpus)], work / "index-0", config, embedder=embedder)

        if "ann" in args.sections and args.ann_size:
            rows = bench_ann(args.ann_size, args.ann_queries, config, embedder)
            report["ann"] = [with_units(row) for row in rows]
            show_table("ANN on real sentences: FAISS search alone, one query per call, recall@10 against exact (flat)", rows)
            good = [r for r in rows if r.recall_at_10 >= ANN_RECALL_GOAL and r.p50_ms <= ANN_P50_GOAL_MS and r.index_type != "flat"]
            goals[f"ANN recall@10 >= {ANN_RECALL_GOAL} at p50 <= {ANN_P50_GOAL_MS:g} ms ({args.ann_size} chunks)"] = bool(good)
            print(goal(f"recall@10 >= {ANN_RECALL_GOAL} at p50 <= {ANN_P50_GOAL_MS:g} ms at {args.ann_size} chunks", bool(good))
                  + (" by " + ", ".join(f"{r.index_type} {r.setting}={r.value}" for r in good) if good else ""))
            memories.append(memory("ann"))

        if "generation" in args.sections:
            index = Index.open(work / "index-0")
            questions = load_questions(Path(args.questions), index.chunks(), args.queries)
            retriever = Retriever(index, config, embedder=embedder)
            rows = latency_rows(retriever, questions)
            report["retrieval"] = [with_units(row) for row in rows]
            show_table(f"retrieval latency on the ingested index, one question per call, k={config.k} (dense, hybrid: embedding included)", rows)
            memories.append(memory("retrieval"))

            generator = Generator.load(config)
            items = [item for item in {i.question: i for i in load_qa(args.questions)}.values() if item.answers][: args.gen_prompts]
            hits = [[h.chunk for h in found] for found in retriever.search([i.question for i in items], config.retriever, config.k)]
            kinds = {"rag": [], "fewshot": load_few_shot(config.override({"few_shot": FEW_SHOT_EXAMPLES}))}
            rag_prompts = {kind: [build_prompt(i.question, found, generator.tokenizer, config, examples).input_ids for i, found in zip(items, hits)]
                           for kind, examples in kinds.items()}
            stream = bench_stream(generator, rag_prompts["rag"][0])
            report["stream"] = with_units(stream)
            show(f"generator streaming ({config.generator}, one RAG prompt, greedy)", stream)

            # The preprompt arm: the corpus in reading order before every question (retriever "corpus").
            whole = config.override({"retriever": WHOLE_CORPUS, "corpus_context_tokens": args.corpus_tokens})
            corpus = [h.chunk for h in retriever.search(["corpus"], WHOLE_CORPUS)[0]]
            rag_prompts["corpus"] = [build_prompt(i.question, corpus, generator.tokenizer, whole, []).input_ids for i in items]
            prefix = [bench_prefix(generator, rag_prompts[kind], kind) for kind in [*kinds, "corpus"]]
            report["prefix_reuse"] = [with_units(row) for row in prefix]
            show_table("prefix reuse: shared prefix prefilled for every question (full) or kept once per generator (reused)", prefix)

            fp32 = generator if generator.model.dtype == torch.float32 else Generator.load(config.override({"generator_precision": "fp32"}))
            paths = [row for kind, examples in kinds.items() for row in bench_eval_path(generator, fp32, items, hits, kind, examples, embedder)]
            report["eval_path"] = [with_units(row) for row in paths]
            show_table("eval path (batched, configured precision, prefix reuse) against the naive loop (one at a time, fp32, no reuse)", paths)
            best = max(row.speedup for row in paths)
            goals[f"eval path >= {BATCH_GOAL:g}x the naive loop"] = best >= BATCH_GOAL
            print(goal(f"eval path >= {BATCH_GOAL:g}x the naive loop (best arm {best:.2f}x)", best >= BATCH_GOAL))
            memories.append(memory("generator"))

        if "training" in args.sections:
            # The corpus itself, built untimed: the QA set names its source files, which the ingest section's copies rename.
            ingest([Path(args.corpus)], work / "training-index", config, embedder=embedder)
            rows = bench_training(work / "training-index", args.questions, config, args.train_steps, args.train_batch)
            report["training"] = [with_units(row) for row in rows]
            show_table("training: a LoRA step on the lab's supervised prompts, loss in fp32 or under bf16 autocast (--precision), "
                       "and with the other --lora-dropout", rows)
            memories.append(memory("training"))

    report["machine"]["loadavg_end"] = os.getloadavg()  # other processes on the CPU make figures noisy
    report["memory"] = [with_units(row) for row in memories]
    show_table("memory (peak is the process high-water mark so far)", memories)
    print(f"\n  load average at start {report['machine']['loadavg_start']}, at end {report['machine']['loadavg_end']} ({os.cpu_count()} CPUs)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    run_cli(main)
