"""Benchmark ingest, retrieval and generation, and LangChain's path on the same corpus and encoder.

Run from the repository root (every model comes from an installed package; nothing is downloaded):

    .venv/bin/python bench/bench.py                                   # vellmar copied to ~1000 chunks, 100k synthetic
    .venv/bin/python bench/bench.py --large 20000 --min-chunks 300    # quick run on a busy machine
    .venv/bin/python bench/bench.py --corpus ../shared/data/seeds-fr --out reports/bench-seeds.json
    .venv/bin/python bench/bench.py --set embed_batch_size=32 --set index_type=hnsw   # any config key

Phases, in order (each prints its figures as soon as it ends; bench/README.md says what each means):

1. ingest: ``rag.ingest.ingest`` on N copies of the corpus with a preloaded embedder, next to the
   raw ``encode`` of exactly the chunks it stored (goal: ingest within 15% of raw encoding);
2. encoder precision: bf16 against fp32 ``encode`` throughput on the same chunks;
3. LangChain: its loaders, ``RecursiveCharacterTextSplitter``, ``HuggingFaceEmbeddings`` and FAISS
   store on the same files and encoder folder, end to end, and the ratio to ours;
4. retrieval latency: single-question p50/p95 through ``Retriever.search`` on the ingested index
   and on synthetic indexes of ``--large`` chunks (flat, hnsw, ivf), plus FAISS alone;
5. generator: time to first token and tokens/s while streaming one real RAG prompt, then batched
   generation (``generation_batch_size`` 8 against 1) in questions/s, in the configured precision
   and in fp32, and the eval path (batched, configured precision) over the naive fp32 loop;
6. peak resident memory after every phase.
"""

from __future__ import annotations

import os

# Before any Hugging Face import: HuggingFaceEmbeddings takes a model *name* and would otherwise
# ask the Hub for metadata before falling back to the local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import math
import platform
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rag.cli_common import add_config_flags, config_from_args, run_cli
from rag.config import CLOSED_BOOK, Config
from rag.eval import throughput
from rag.generate import Generator
from rag.embed import embed_texts, load_embedder
from rag.index import FileRecord, Index, Manifest, write_generation, writer_lock
from rag.ingest import IngestSummary, discover, ingest, load_and_chunk
from rag.models import embedder_source, resolve_device, resolve_dtype
from rag.passage import Chunk
from rag.prompt import build_prompt, load_few_shot
from rag.retrieve import RETRIEVAL_METHODS, Retriever
from rag.runtime import peak_rss_mb

REPO = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = REPO / "corpora" / "vellmar-qa.jsonl"
INGEST_GOAL = 0.15  # the goal: ingest at most 15% slower than raw encoding
BATCH_GOAL = 3.0  # the eval issue's goal: >= 3x the questions/s of one-at-a-time generation


# ---------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class IngestFigures:
    corpus: str
    copies: int
    files: int
    chunks: int
    ingest_s: float
    ingest_chunks_per_s: float
    raw_encode_s: float  # embed_texts (SentenceTransformer.encode) on the same chunk texts
    raw_encode_chunks_per_s: float
    overhead_pct: float  # (ingest_s / raw_encode_s - 1) * 100; goal <= 15
    load_chunk_s: float  # loading and chunking the same files alone
    write_other_s: float  # by difference: hashing, SQLite, FAISS, BM25, fsync


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
    index: str  # "ingested" or "synthetic"
    index_type: str
    chunks: int
    method: str  # dense | bm25 | hybrid through Retriever.search, or faiss-only
    queries: int
    p50_ms: float
    p95_ms: float
    build_s: float  # write_generation for synthetic indexes, 0 for the ingested one


@dataclass(frozen=True)
class StreamFigures:
    prompt_tokens: int
    new_tokens: int  # the streamed text re-tokenized, so +-1 token
    first_token_s: float  # from stream() called to the first non-empty piece (prefill + 1 token)
    decode_tokens_per_s: float  # after the first piece
    total_s: float


@dataclass(frozen=True)
class BatchFigures:
    prompts: str  # "rag" (question + retrieved passages) or "closed-book" (question only)
    precision: str  # the generator's weights dtype
    questions: int
    mean_prompt_tokens: int
    max_new_tokens: int
    batch_size: int
    batched_qps: float  # questions/s, batch_size prompts per Generator.generate call
    sequential_qps: float  # questions/s, one prompt per call
    speedup: float  # batched_qps / sequential_qps; goal >= 3


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
    to_read = [(path, path.read_bytes(), "") for path in files]
    return load_and_chunk(to_read, tokenizer, config, IngestSummary(""), show_progress=False)[0]


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


def bench_ingest(corpus: Path, copies: int, min_chunks: int, work: Path, config: Config, embedder) -> IngestFigures:
    files, _ = discover([corpus])
    if copies <= 0:  # auto: enough copies for min_chunks
        per_copy = len(load_and_chunk_files(files, embedder.tokenizer, config))
        copies = max(1, math.ceil(min_chunks / max(per_copy, 1)))
    copied = replicate_corpus(files, corpus.resolve(), work / "corpus", copies)

    summary = ingest([work / "corpus"], work / "index", config, embedder=embedder)
    texts = [chunk.text for chunk in Index.open(work / "index").chunks()]
    _, encode_s = timed(embed_texts, embedder, texts, config.embed_batch_size)
    _, load_chunk_s = timed(load_and_chunk_files, copied, embedder.tokenizer, config)
    return IngestFigures(
        corpus=str(corpus),
        copies=copies,
        files=summary.files_read,
        chunks=summary.chunks_total,
        ingest_s=round(summary.seconds, 2),
        ingest_chunks_per_s=rate(summary.chunks_total, summary.seconds),
        raw_encode_s=round(encode_s, 2),
        raw_encode_chunks_per_s=rate(len(texts), encode_s),
        overhead_pct=round((summary.seconds / encode_s - 1) * 100, 1),
        load_chunk_s=round(load_chunk_s, 2),
        write_other_s=round(summary.seconds - encode_s - load_chunk_s, 2),
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


def bench_langchain(files: list[Path], config: Config, ours_chunks_per_s: float) -> LangChainFigures:
    """LangChain's documented path, end to end, with model loading kept out of the timing as for ours."""
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

        began = time.perf_counter()
        documents, skipped = [], []
        for path in files:
            try:
                documents += langchain_loader(path).load()
            except Exception as error:  # noqa: BLE001 -- any loader failure is a skipped file, as in ours
                skipped.append(f"{path.name}: {type(error).__name__}: {error}")
        pieces = splitter.split_documents(documents)
        FAISS.from_documents(pieces, embeddings)
        seconds = time.perf_counter() - began
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


def latency_rows(retriever: Retriever, questions: list[str], label: str, build_s: float) -> list[LatencyRow]:
    """p50/p95 of one question at a time through Retriever.search, per method, and of FAISS alone."""
    index, config = retriever.index, retriever.config
    timings = {}
    for method in RETRIEVAL_METHODS:
        retriever.search(questions[:1], method, k=config.k)  # warm-up: loads FAISS / BM25 from disk
        timings[method] = [timed(retriever.search, [q], method, config.k)[1] for q in questions]
    vectors = embed_texts(retriever.embedder, questions, config.embed_batch_size)  # (n_questions, dim)
    timings["faiss-only"] = [timed(index.search_vectors, v[None, :], config.k, config.ivf_nprobe)[1] for v in vectors]
    return [
        LatencyRow(label, index.manifest.index_type, len(index), method, len(seconds), *percentiles_ms(seconds), build_s)
        for method, seconds in timings.items()
    ]


def synthetic_corpus(size: int, real: list[Chunk], dim: int, seed: int = 0) -> tuple[list[Chunk], np.ndarray, list[FileRecord]]:
    """``size`` chunks of words drawn from the real chunks' running text, with random unit vectors.

    Words are drawn with their corpus frequency (not uniformly from the vocabulary), so BM25
    posting lists have a realistic skew; each chunk has the real chunks' mean word count.
    """
    rng = np.random.default_rng(seed)
    words = np.array(" ".join(chunk.text for chunk in real).split())
    length = max(1, round(len(words) / len(real)))
    drawn = words[rng.integers(0, len(words), size=(size, length))]  # (size, length)
    per_file = 100
    source = "/synthetic/doc-{:05d}.txt".format
    chunks = [Chunk(" ".join(row), source(i // per_file)) for i, row in enumerate(drawn)]
    files = [FileRecord(source(n), f"{n:064x}", min(per_file, size - n * per_file)) for n in range(math.ceil(size / per_file))]
    vectors = rng.standard_normal((size, dim), dtype=np.float32)  # (size, dim)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), files


def synthetic_index(folder: Path, chunks, vectors, files, config: Config) -> tuple[Index, float]:
    """A real index (SQLite, FAISS of ``config.index_type``, BM25) over synthetic chunks; and its build time."""
    manifest = Manifest(
        embedder=config.embedder,
        embedder_fingerprint=embedder_source(config.embedder).fingerprint(),  # so Retriever accepts our queries
        dimension=vectors.shape[1],
        chunk_tokens=config.chunk_tokens,
        chunk_overlap=config.chunk_overlap,
        index_type=config.index_type,
        num_chunks=len(chunks),
        num_files=len(files),
    )
    with writer_lock(folder):
        _, seconds = timed(write_generation, folder, chunks, vectors, files, manifest, config)
    return Index.open(folder), seconds


def bench_large(size: int, real: Index, questions: list[str], work: Path, config: Config, embedder) -> list[LatencyRow]:
    chunks, vectors, files = synthetic_corpus(size, real.chunks(), real.manifest.dimension)
    rows = []
    for index_type in ("flat", "hnsw", "ivf"):
        typed = config.override({"index_type": index_type})
        index, build_s = synthetic_index(work / f"synthetic-{index_type}", chunks, vectors, files, typed)
        rows += latency_rows(Retriever(index, typed, embedder=embedder), questions, "synthetic", round(build_s, 2))
        shutil.rmtree(work / f"synthetic-{index_type}")  # 100k vectors are ~150 MB per copy
    return rows


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


def bench_batches(generator: Generator, prompts: list[list[int]], config: Config, kind: str, batch_size: int = 8) -> BatchFigures:
    """Questions/s of Generator.generate, ``batch_size`` prompts per call against one, same model and prompts."""
    sized = Generator(generator.model, generator.tokenizer, config.override({"generation_batch_size": batch_size}))
    result = throughput(sized, prompts)
    return BatchFigures(
        kind,
        precision_of(generator),
        result.questions,
        sum(map(len, prompts)) // len(prompts),
        config.max_new_tokens,
        result.batch_size,
        round(result.batched_qps, 3),
        round(result.sequential_qps, 3),
        round(result.speedup, 2),
    )


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(REPO / "corpora" / "vellmar"), help="folder of documents to ingest")
    parser.add_argument("--repeat", type=int, default=0, help="copies of the corpus to ingest; 0 = enough for --min-chunks")
    parser.add_argument("--min-chunks", type=int, default=1000, help="chunk count the automatic --repeat aims for")
    parser.add_argument("--large", type=int, default=100_000, help="chunks in the synthetic indexes; 0 skips them")
    parser.add_argument("--queries", type=int, default=200, help="single-question searches timed per method and index")
    parser.add_argument("--questions", default=str(DEFAULT_QUESTIONS), help="QA JSONL whose questions are the queries")
    parser.add_argument("--precision-sample", type=int, default=256, help="chunks encoded in bf16 and fp32")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per answer")
    parser.add_argument("--gen-prompts", type=int, default=8, help="prompts for batched generation")
    parser.add_argument("--out", help="write every figure to this JSON file")
    add_config_flags(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    config = config_from_args(args, max_new_tokens=args.max_new_tokens)
    report: dict[str, object] = {
        "command": " ".join(sys.argv),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": resolve_device(config.device),
            "loadavg_start": os.getloadavg(),
        },
        "config": config.to_dict(),
    }
    memories = [memory("start")]
    embedder = load_embedder(config)
    embed_texts(embedder, ["warm up"] * 8, config.embed_batch_size)  # first call allocates: keep it out of both timings

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        work = Path(tmp)
        ingested = bench_ingest(Path(args.corpus), args.repeat, args.min_chunks, work, config, embedder)
        report["ingest"] = asdict(ingested)
        show("ingest (rag.ingest.ingest vs raw encode of the same chunks)", ingested)
        print(f"  goal: overhead <= {INGEST_GOAL:.0%}: {'met' if ingested.overhead_pct <= INGEST_GOAL * 100 else 'NOT met'}")
        memories.append(memory("ingest"))

        index = Index.open(work / "index")
        chunks = index.chunks()
        precision = bench_precision([c.text for c in chunks[: args.precision_sample]], config, embedder)
        report["precision"] = asdict(precision)
        show("encoder precision (embed_precision)", precision)
        memories.append(memory("precision"))

        copies = sorted(path for path in (work / "corpus").rglob("*") if path.is_file())
        langchain = bench_langchain(copies, config, ingested.ingest_chunks_per_s)
        report["langchain"] = asdict(langchain)
        show("LangChain (loaders + RecursiveCharacterTextSplitter + HuggingFaceEmbeddings + FAISS)", langchain)
        memories.append(memory("langchain"))

        questions = load_questions(Path(args.questions), chunks, args.queries)
        retriever = Retriever(index, config, embedder=embedder)
        rows = latency_rows(retriever, questions, "ingested", 0.0)
        if args.large:
            rows += bench_large(args.large, index, questions, work, config, embedder)
        report["retrieval"] = [asdict(row) for row in rows]
        show_table(f"retrieval latency, one question per call, k={config.k} (dense, hybrid: embedding included)", rows)
        memories.append(memory("retrieval"))

        generator = Generator.load(config)
        unique = list(dict.fromkeys(questions))[: args.gen_prompts]
        examples = load_few_shot(config)
        hits = retriever.search(unique, config.retriever, config.k)
        prompts = [build_prompt(q, [h.chunk for h in found], generator.tokenizer, config, examples).input_ids for q, found in zip(unique, hits)]
        stream = bench_stream(generator, prompts[0])
        report["stream"] = asdict(stream)
        show(f"generator streaming ({config.generator}, one RAG prompt, greedy)", stream)
        # Long RAG prompts make prefill, which batching barely speeds up on a CPU, the bulk of the work;
        # closed-book prompts show the decoding-bound case. The fp32 rows are the naive baseline:
        # transformers' default dtype, one question per generate call.
        closed = config.override({"retriever": CLOSED_BOOK})
        closed_book = [build_prompt(q, [], generator.tokenizer, closed, examples).input_ids for q in unique]
        fp32 = generator if generator.model.dtype == torch.float32 else Generator.load(config.override({"generator_precision": "fp32"}))
        batched: dict[tuple[str, str], BatchFigures] = {}
        for model in dict.fromkeys((generator, fp32)):
            for kind, token_prompts in (("rag", prompts), ("closed-book", closed_book)):
                batches = batched[kind, precision_of(model)] = bench_batches(model, token_prompts, config, kind)
                show(f"batched generation ({kind} prompts, {batches.precision}, greedy)", batches)
        report["batched"] = [asdict(batches) for batches in batched.values()]
        for kind in ("rag", "closed-book"):
            ours, naive = batched[kind, precision_of(generator)], batched[kind, "float32"]
            speedup = ours.batched_qps / naive.sequential_qps
            report[f"eval_path_over_naive_{kind}"] = round(speedup, 2)
            print(f"\n  {kind}: eval path (batches of 8, {ours.precision}) over the naive loop (one at a time, float32): "
                  f"{speedup:.2f}x; goal >= {BATCH_GOAL:g}x: {'met' if speedup >= BATCH_GOAL else 'NOT met'}")
        memories.append(memory("generator"))

    report["machine"]["loadavg_end"] = os.getloadavg()  # other processes on the CPU make figures noisy
    report["memory"] = [asdict(row) for row in memories]
    show_table("memory (peak is the process high-water mark so far)", memories)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
