"""python -m rag ask|chat|serve: question answering over an index.

    python -m rag ask "When was the cooperative founded?" --index indexes/vellmar
    python -m rag ask "..." --index indexes/vellmar --retriever bm25 --k 6 --few-shot 4 --json
    python -m rag ask "..." --no-retrieval                     # closed-book baseline
    python -m rag ask "..." --index indexes/vellmar --adapter runs/lora
    python -m rag chat --index indexes/vellmar
    python -m rag serve --index indexes/vellmar                # OpenAI-compatible API and a web page on 127.0.0.1:8000
    python -m rag serve --report reports/vellmar --combination bm25+lora
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rag.cli_common import add_config_flags, config_from_args, given, option, run_cli
from rag.config import CLOSED_BOOK, Config
from rag.eval.artifacts import load_artifact
from rag.index import IndexStoreError
from rag.pipeline import Answer, Pipeline
from rag.retrieve import RETRIEVAL_METHODS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from rag.serve.config import API_KEY_ENV, ServeConfig  # the dataclass only: fastapi loads with `serve`

    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    chat = commands.add_parser("chat", help="interactive loop, models loaded once")
    serve = commands.add_parser("serve", help="OpenAI-compatible API and web page, models loaded once")
    for sub in (ask, chat, serve):
        sub.add_argument("--index", help="index folder written by rag.ingest (omit for closed book)")
        option(sub, Config, "--retriever", choices=[*RETRIEVAL_METHODS, CLOSED_BOOK])
        option(sub, Config, "--no-retrieval", field="retriever", action="store_const", const=CLOSED_BOOK, help="closed book: no context at all")
        option(sub, Config, "--k", type=int, help="passages to retrieve")
        option(sub, Config, "--few-shot", type=int, help="number of few-shot examples in the prompt")
        sub.add_argument("--embedder", help="query embedder (default: the one the index was built with)")
        option(sub, Config, "--generator", help="generator: package:NAME or a fully fine-tuned folder")
        sub.add_argument("--adapter", help="LoRA adapter folder from rag.finetune")
        sub.add_argument("--soft-prompt", help="prompt-tuning folder from rag.finetune")
        option(sub, Config, "--max-new-tokens", type=int)
        add_config_flags(sub)
    for sub in (ask, chat):
        sub.add_argument("--json", action="store_true", help="print the answer as JSON")
    option(serve, ServeConfig, "--host", help="address to listen on")
    option(serve, ServeConfig, "--port", type=int, help="port (0: any free one)")
    option(serve, ServeConfig, "--api-key", help=f"require Authorization: Bearer KEY on /v1 (or set {API_KEY_ENV})")
    option(serve, ServeConfig, "--max-request-bytes", type=int, help="larger request bodies get 413")
    option(serve, ServeConfig, "--max-tokens", type=int, help="the most new tokens one request may ask for")
    option(serve, ServeConfig, "--batch-window-ms", type=float, help="how long the first queued request waits for others to batch with")
    option(serve, ServeConfig, "--report", metavar="DIR", help="serve a combination of this eval report folder (and show it at /report)")
    option(serve, ServeConfig, "--combination", metavar="NAME", help="with --report: retriever+generator, e.g. bm25+lora (default: the verdict's pick)")
    option(serve, ServeConfig, "--fold", type=int, metavar="I", help="with a cross-validated --report: serve fold I's fine-tuned artifacts (0 to K-1)")
    return parser.parse_args(argv)


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    if args.adapter and args.soft_prompt:
        raise ValueError("give --adapter or --soft-prompt, not both")
    for flag, folder in (("--adapter", args.adapter), ("--soft-prompt", args.soft_prompt)):
        if folder:
            load_artifact(flag, folder)  # a missing folder or one of another kind, named before any model loads
    config = config_from_args(args)
    if config.retriever != CLOSED_BOOK and not args.index:
        raise ValueError("--index INDEX_DIR is required unless --no-retrieval is given")
    index = args.index if config.retriever != CLOSED_BOOK else None
    return Pipeline(index, config, adapter=args.adapter or args.soft_prompt, embedder_spec=args.embedder)


def print_sources(answer: Answer) -> None:
    if not answer.sources:
        return
    print("\nSources:")
    for number, source in enumerate(answer.sources, 1):
        page = f", page {source.page}" if source.page else ""
        mark = "*" if source.cited else " "
        print(f" {mark}[{number}] {Path(source.source).name}{page}  (score {source.score:.3f})  {source.source}")
    if answer.omitted_passages:
        print(f"  ({answer.omitted_passages} retrieved passages did not fit the context budget)")


def answer_one(pipeline: Pipeline, question: str, as_json: bool) -> None:
    if as_json:
        answer = pipeline.ask(question)
        payload = answer.to_dict()
        payload["sources"] = [{k: v for k, v in s.items()} for s in payload["sources"]]
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    answer = pipeline.ask(question, on_token=lambda piece: print(piece, end="", flush=True))
    print()
    print_sources(answer)


def serve_command(args: argparse.Namespace) -> int:
    """``--index`` and the model flags, or ``--report DIR [--combination NAME]``; then serve until interrupted."""
    from rag.serve import ServeConfig, Served, from_report, generator_label, serve

    settings = dataclasses.replace(ServeConfig(), **given(args, ServeConfig)).with_env()
    if settings.report:
        model_flags = [flag for flag, value in (("--index", args.index), ("--embedder", args.embedder), ("--adapter", args.adapter), ("--soft-prompt", args.soft_prompt)) if value]
        model_flags += ["--" + key.replace("_", "-") for key in given(args, Config) if key in ("retriever", "k", "few_shot", "generator")]
        if model_flags:
            raise ValueError(f"{', '.join(model_flags)}: with --report the combination's settings come from the report; leave them out")
        served = from_report(settings.report, settings.combination or None, fold=settings.fold, adjust=lambda base: config_from_args(args, base))
    else:
        pipeline = build_pipeline(args)
        served = Served(generator_label(pipeline.config, args.adapter, args.soft_prompt), pipeline)
    serve(served, settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        return serve_command(args)
    pipeline = build_pipeline(args)
    if args.command == "ask":
        answer_one(pipeline, args.question, args.json)
        return 0
    print("Ask a question (empty line or Ctrl-D to quit).", file=sys.stderr)
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            break
        if not question:
            break
        try:  # a bad question costs that question only; the models stay loaded
            answer_one(pipeline, question, args.json)
        except (ValueError, IndexStoreError) as error:
            print(f"error: {error}", file=sys.stderr)
    return 0


def entry() -> None:
    """The `rag` console script."""
    run_cli(main)


if __name__ == "__main__":
    entry()
