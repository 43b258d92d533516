"""Benchmark ``python -m rag serve``: latency and throughput under concurrent clients, against one by one.

Run from the repository root (models come from installed packages; nothing is downloaded):

    .venv/bin/python bench/serve_bench.py                              # 16 clients x 4 questions, hybrid k=4, 32 tokens
    .venv/bin/python bench/serve_bench.py --clients 4 --per-client 2 --max-tokens 8 --retriever none   # quick
    .venv/bin/python bench/serve_bench.py --index indexes/vellmar --out reports/serve-bench.json

One server (the real app, from a thread, on 127.0.0.1 and a free port) answers
the first ``clients x per-client`` questions of the Vellmar QA set twice, through
the official ``openai`` client:

1. one by one: a single client sends each question after the previous answer;
2. concurrently: ``--clients`` clients at once, each sending its ``--per-client``
   questions one after the other, so the server's queue batches them.

For each it prints the latency per request (p50, p95, from send to the whole
answer), the wall time and the throughput (answers per second), then the
concurrent/one-by-one throughput ratio. Every request must be answered: a lost
one is an error.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rag import Pipeline, ingest  # noqa: E402
from rag.cli_common import add_config_flags, config_from_args  # noqa: E402
from rag.serve import ServeConfig, Served, generator_label  # noqa: E402
from rag.serve.app import create_app  # noqa: E402
from rag.serve.server import background  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", help="an index folder (default: ingest corpora/vellmar into a temporary one)")
    parser.add_argument("--qa", default=str(ROOT / "corpora" / "vellmar-qa.jsonl"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=4, help="questions each client asks, one after the other")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--retriever", default="hybrid")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--batch-window-ms", type=float, default=ServeConfig.batch_window_ms)
    parser.add_argument("--out", help="write the figures as JSON here")
    add_config_flags(parser)
    return parser.parse_args()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def figures(name: str, latencies: list[float], wall: float) -> dict:
    result = {
        "requests": len(latencies),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "wall_s": round(wall, 2),
        "answers_per_s": round(len(latencies) / wall, 3),
    }
    print(
        f"{name:>13}: {result['requests']} answers in {result['wall_s']:.1f} s = {result['answers_per_s']:.2f}/s; "
        f"latency p50 {result['latency_p50_s']:.2f} s, p95 {result['latency_p95_s']:.2f} s",
        flush=True,
    )
    return result


async def ask(client, question: str, args: argparse.Namespace) -> float:
    began = time.perf_counter()
    reply = await client.chat.completions.create(
        model=args.model, messages=[{"role": "user", "content": question}], max_tokens=args.max_tokens, extra_body={"k": args.k}
    )
    if not reply.choices[0].message.content:
        raise RuntimeError(f"empty answer to {question!r}")
    return time.perf_counter() - began


async def one_by_one(client, questions: list[str], args) -> tuple[list[float], float]:
    began = time.perf_counter()
    latencies = [await ask(client, question, args) for question in questions]
    return latencies, time.perf_counter() - began


async def concurrent(client, questions: list[str], args) -> tuple[list[float], float]:
    async def user(mine: list[str]) -> list[float]:
        return [await ask(client, question, args) for question in mine]

    began = time.perf_counter()
    per_client = await asyncio.gather(*(user(questions[i :: args.clients]) for i in range(args.clients)))
    return [latency for latencies in per_client for latency in latencies], time.perf_counter() - began


def main() -> None:
    from openai import AsyncOpenAI

    args = parse_args()
    config = config_from_args(args).override({"max_new_tokens": args.max_tokens})
    index = args.index
    if index is None:
        index = tempfile.mkdtemp(prefix="serve-bench-")
        ingest([ROOT / "corpora" / "vellmar"], index, config)
    lines = Path(args.qa).read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines][: args.clients * args.per_client]
    if len(questions) < args.clients * args.per_client:
        raise SystemExit(f"{args.qa} has only {len(questions)} questions")

    pipeline = Pipeline(index, config.override({"generation_batch_size": max(config.generation_batch_size, args.clients)}))
    settings = ServeConfig(max_tokens=max(args.max_tokens, 1), batch_window_ms=args.batch_window_ms)
    served = Served(generator_label(config), pipeline)
    args.model = f"{args.retriever}+{served.generator}"  # the model id names the retriever
    app = create_app(served, settings)
    print(
        f"serving {len(questions)} questions ({args.retriever}, k={args.k}, max_tokens={args.max_tokens}, "
        f"batches of up to {pipeline.config.generation_batch_size}, window {args.batch_window_ms:g} ms); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    with background(app) as url:

        async def run() -> dict:
            client = AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=3600)
            await ask(client, questions[0], args)  # warm-up
            sequential = figures("one by one", *await one_by_one(client, questions, args))
            parallel = figures(f"{args.clients} clients", *await concurrent(client, questions, args))
            return {"one_by_one": sequential, "concurrent": parallel}

        result = asyncio.run(run())
        counters = app.state.batcher.counters
    ratio = result["concurrent"]["answers_per_s"] / result["one_by_one"]["answers_per_s"]
    print(f"throughput, {args.clients} concurrent clients / one by one: {ratio:.2f}x; "
          f"{counters.finished} answered, {counters.cancelled} cancelled, {counters.batches} batches", flush=True)
    if counters.cancelled or counters.finished != 2 * len(questions) + 1:
        raise SystemExit("requests were lost")
    if args.out:
        record = {
            **result, "throughput_ratio": round(ratio, 3), "args": vars(args), "load_average": os.getloadavg(),
            "cpus": os.cpu_count(), "machine": platform.machine(), "batches": counters.batches,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
