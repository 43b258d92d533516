"""python -m rag.ingest DIR_OR_FILE... --index INDEX_DIR

    python -m rag.ingest corpora/vellmar --index indexes/vellmar
    python -m rag.ingest ../shared/data/pdfs --index /tmp/i --pdf-password openpassword --json
    python -m rag.ingest --index indexes/vellmar --embedder runs/embedder   # re-embed with a fine-tuned encoder
"""

from __future__ import annotations

import argparse
import json
import sys

from rag.cli_common import add_config_flags, config_from_args, option, run_cli
from rag.config import Config
from rag.index import FAISS_INDEX_TYPES
from rag.ingest import IngestSummary, NothingToIndex, ingest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rag.ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="folders (walked recursively) and files: .txt .md .rst .html .pdf")
    parser.add_argument("--index", required=True, help="index folder, created or updated")
    option(parser, Config, "--embedder", help="package:NAME or a fine-tuned sentence-transformers folder")
    option(parser, Config, "--index-type", choices=list(FAISS_INDEX_TYPES), help="FAISS index (flat: exact)")
    option(parser, Config, "--chunk-tokens", type=int)
    option(parser, Config, "--chunk-overlap", type=int)
    option(parser, Config, "--embed-batch-size", "--batch-size", type=int, help="embedding batch size")
    option(parser, Config, "--pdf-password", help="password for encrypted PDFs")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_config_flags(parser)
    return parser.parse_args(argv)


def print_summary(summary: IngestSummary) -> None:
    if not summary.changed:
        print(f"{summary.index}: nothing changed ({summary.files_unchanged} files, {summary.chunks_total} chunks), {len(summary.skipped)} skipped")
    else:
        print(
            f"{summary.index}: {summary.files_read} files read, {summary.files_unchanged} unchanged, "
            f"{summary.files_removed} removed, {len(summary.skipped)} skipped; chunks +{summary.chunks_added} "
            f"-{summary.chunks_removed} = {summary.chunks_total}; {summary.seconds:.1f} s ({summary.embed_seconds:.1f} s encoding)"
        )
    for skipped in summary.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_args(args)
    try:
        summary = ingest(args.paths, args.index, config, show_progress=not args.json and sys.stderr.isatty())
    except NothingToIndex as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print_summary(summary)
    return 0


if __name__ == "__main__":
    run_cli(main)
