"""python -m rag ask|chat: question answering over an index.

    python -m rag ask "When was the cooperative founded?" --index indexes/vellmar
    python -m rag ask "..." --index indexes/vellmar --retriever bm25 --k 6 --few-shot 4 --json
    python -m rag ask "..." --no-retrieval                     # closed-book baseline
    python -m rag ask "..." --index indexes/vellmar --adapter runs/lora
    python -m rag chat --index indexes/vellmar
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.cli_common import add_config_flags, config_from_args, option, run_cli
from rag.config import CLOSED_BOOK, Config
from rag.eval.artifacts import load_artifact
from rag.index import IndexStoreError
from rag.pipeline import Answer, Pipeline
from rag.retrieve import RETRIEVAL_METHODS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="answer one question")
    ask.add_argument("question")
    chat = commands.add_parser("chat", help="interactive loop, models loaded once")
    for sub in (ask, chat):
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
        sub.add_argument("--json", action="store_true", help="print the answer as JSON")
        add_config_flags(sub)
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
