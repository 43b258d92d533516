"""python -m rag.eval: score every retriever x generator combination and write the "RAG or fine-tune?" report.

    # the sample corpus, held-out questions, every combination whose artifacts are given
    python -m rag.eval --qa corpora/vellmar-qa.jsonl --corpus corpora/vellmar --split val --out reports/vellmar \\
        --embedder runs/embedder --adapter runs/lora --soft-prompt runs/soft-prompt --generator runs/full
    # a SQuAD file alone: its paragraphs become the corpus
    python -m rag.eval --qa ../shared/data/squad/notre-dame-train-v1.1.json --corpus-from-qa \\
        --retrievers none,bm25,dense,hybrid --generators base,fewshot --limit 40 --out reports/squad
    # the combinations from a file (TOML or YAML keys: any long flag below, with _ for -)
    python -m rag.eval --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --matrix eval.toml --out reports/x

Rerunning with the same --out resumes from OUT/predictions.jsonl.
"""

from __future__ import annotations

import argparse

from rag.cli_common import add_config_flags, config_from_args, run_cli
from rag.eval.matrix import GENERATORS, RETRIEVERS, SPLITS, EvalConfig, load_matrix
from rag.eval.runner import run_eval


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rag.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qa", required=True, help="QA set: SQuAD v1.1 JSON or JSONL {question, answers, source?}")
    corpus = parser.add_mutually_exclusive_group()
    corpus.add_argument("--corpus", nargs="+", metavar="PATH", help="folders or files to ingest into OUT/index")
    corpus.add_argument("--index", help="an existing index folder written by rag.ingest")
    corpus.add_argument("--corpus-from-qa", action="store_true", default=None, help="the QA set's contexts are the corpus")
    parser.add_argument("--out", required=True, help="report folder (rerun with the same one to resume)")
    parser.add_argument("--retrievers", help=f"comma list of {','.join(RETRIEVERS)} (default: all whose artifacts exist)")
    parser.add_argument("--generators", help=f"comma list of {','.join(GENERATORS)} (default: all whose artifacts exist)")
    parser.add_argument("--embedder", help="fine-tuned embedder folder (dense-ft)")
    parser.add_argument("--adapter", help="LoRA adapter folder (lora)")
    parser.add_argument("--soft-prompt", help="prompt-tuning folder (soft-prompt)")
    parser.add_argument("--generator", help="fully fine-tuned generator folder (full)")
    parser.add_argument("--limit", type=int, help="evaluate a seeded sample of N questions (and N probe questions)")
    parser.add_argument("--split", choices=SPLITS, help="questions to use; val = those rag.finetune held out (default: all)")
    parser.add_argument("--seed", type=int, help="seed of the --limit sample and the bootstrap (default 0)")
    parser.add_argument("--k", type=int, help="retrieval metrics at 1..K (default 10); passages in the prompt: --set k=N")
    parser.add_argument("--probe", help="general-knowledge probe JSONL for forgetting ('' to skip)")
    parser.add_argument("--matrix", help="TOML or YAML file of the settings above (flags given here win)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length cap (default 32; wins over --set)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(parser)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> EvalConfig:
    """Defaults, then the --matrix file, then the flags that were given."""
    rag = config_from_args(args, max_new_tokens=args.max_new_tokens)
    settings = EvalConfig(args.qa, args.out, rag=rag).override(load_matrix(args.matrix) if args.matrix else {})
    flags = {
        name: getattr(args, name)
        for name in ("corpus", "index", "corpus_from_qa", "retrievers", "generators", "embedder", "adapter",
                     "soft_prompt", "generator", "limit", "split", "seed", "k", "probe")
    }
    return settings.override({name: value for name, value in flags.items() if value is not None})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run_eval(settings_from_args(args), progress=not args.quiet)
    print("\n".join(report.verdict.summary))
    print(f"report: {args.out}/report.md")
    return 0


if __name__ == "__main__":
    run_cli(main)
