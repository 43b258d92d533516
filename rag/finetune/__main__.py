"""python -m rag.finetune MODE --out DIR [data flags] [training flags]

MODE is embeddings, lora, prompt-tuning, full or scratch (a small model from random weights). Data: --pairs FILE.jsonl, --qa FILE
(SQuAD v1.1 JSON or JSONL; without "context" lines pass --index), or --synthetic --index DIR.

    python -m rag.finetune embeddings --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --out runs/embedder
    python -m rag.ingest --index indexes/vellmar --embedder runs/embedder          # re-embed with it
    python -m rag.finetune lora --qa ../shared/data/squad/notre-dame-train-v1.1.json --out runs/lora --max-steps 50
    python -m rag ask "..." --index indexes/vellmar --adapter runs/lora
    python -m rag.finetune lora --objective unsupervised --index indexes/vellmar --paraphrases 1 --out runs/lora-kb
    python -m rag.finetune prompt-tuning --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --out runs/soft
    python -m rag.finetune full --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --out runs/full --max-steps 20
    python -m rag.finetune embeddings --synthetic --index indexes/vellmar --out runs/embedder-synth
    python -m rag.finetune lora ... --out runs/lora --resume --max-steps 100     # continue a run
    python -m rag.finetune lora ... --out runs/lora --lr-sweep 1e-4,3e-4,1e-3 --sweep-steps 10   # rate by validation loss
    python -m rag.finetune lora --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --folds 5 --fold 0 --out runs/fold-0/lora
    python -m rag.finetune lora --objective closed-book --cloze 2 --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --out runs/lora-cb
    python -m rag.finetune lora --objective preprompt --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --out runs/lora-pp
    python -m rag.finetune scratch --qa corpora/vellmar-qa.jsonl --index indexes/vellmar --out runs/scratch   # closed book
"""

from __future__ import annotations

import argparse

from rag.cli_common import add_config_flags, config_from_args, given, run_cli
from rag.cli_common import option as config_option
from rag.finetune.config import DISTRACTOR_SOURCES, GRADIENT_CHECKPOINTING, MODE_DEFAULTS, OBJECTIVES, FinetuneConfig
from rag.finetune.run import finetune
from rag.qa import SPLIT_UNITS



def option(group, flag: str, help: str = "", **kwargs) -> None:
    """A flag for the FinetuneConfig field of the same name (its help text second, as most flags here have one)."""
    config_option(group, FinetuneConfig, flag, help=help, **kwargs)


def rates(text: str) -> tuple[float, ...]:
    """``"1e-4,3e-4"`` -> ``(0.0001, 0.0003)``, for ``--lr-sweep``."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1e-4,3e-4,1e-3, got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rag.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", help=f"one of {', '.join(MODE_DEFAULTS)}")  # checked by FinetuneConfig.resolved
    option(parser, "--out", required=True, help="artifact folder (checkpoints go in DIR/checkpoints)")
    data = parser.add_argument_group("data")
    option(data, "--pairs", 'JSONL of {"query", "positive", "negative"?}')
    option(data, "--qa", 'SQuAD v1.1 JSON or JSONL of {"question", "answers", "context" or "source"}')
    option(data, "--synthetic", "generate questions for the chunks of --index", action="store_true")
    option(data, "--index", "index folder: gold passages for --qa without context, distractors, --synthetic")
    option(data, "--val-fraction", "held-out share of the questions", type=float)
    option(data, "--limit", "at most N examples in all, --val-fraction of them for validation", type=int)
    option(data, "--seed", "split, folds, batch order and initialisation", type=int)
    option(data, "--folds", "cross-validation: split the questions into K folds (with --fold)", type=int)
    option(data, "--fold", "cross-validation: leave fold I out, for rag.eval --folds K to score", type=int)
    option(data, "--split-by", "what the split and folds keep on one side: question, or document (a SQuAD paragraph, a "
           "source file): the held-out questions are then about documents never trained on", choices=SPLIT_UNITS)
    training = parser.add_argument_group("training (unset: the mode's default, see rag/finetune/config.py)")
    option(training, "--epochs", type=int)
    option(training, "--lr", type=float)
    option(training, "--lr-sweep", "comma-separated rates: train each, keep the lowest validation loss's (rag/finetune/sweep.py)",
           type=rates, metavar="LR,LR,...")
    option(training, "--sweep-steps", "with --lr-sweep: optimizer steps per trial (default: the whole budget)", type=int)
    option(training, "--batch-size", type=int)
    option(training, "--max-steps", "stop after N optimizer steps in total", type=int)
    option(training, "--checkpoint-every", "steps between checkpoints", type=int)
    option(training, "--validate-every", "steps between validations besides each epoch end; the lowest validation loss is kept", type=int)
    option(training, "--precision", "fp32 (default), bf16 (autocast; frozen weights in bf16), or auto: bf16 where the device computes it natively",
           choices=("auto", "bf16", "fp32"))
    option(training, "--gradient-checkpointing", "full: recompute activations in the backward pass (less memory, slower); "
           "auto: on where batches run padded (GPU), off where each sequence runs alone (CPU)", choices=GRADIENT_CHECKPOINTING)
    option(training, "--resume", "continue from the last checkpoint in DIR/checkpoints", action="store_true")
    modes = parser.add_argument_group("mode options")
    option(modes, "--hard-negatives", "embeddings: mine one hard negative per pair", action="store_true")
    option(modes, "--objective", "generator modes (default: closed-book for scratch, else supervised); preprompt: "
           "each question after the whole corpus of --index, as the eval's corpus retriever prompts it", choices=OBJECTIVES)
    option(modes, "--passages", "passages per supervised prompt, the gold one included", type=int)
    option(modes, "--distractors", "share of supervised examples with distractors only (RAFT)", type=float)
    option(modes, "--distractors-from", "supervised: distractors drawn at random from the corpus (default), or the "
           "passages BM25 ranks highest for the question, as a BM25 eval retrieves them", choices=DISTRACTOR_SOURCES)
    option(modes, "--unanswerable", "supervised, closed-book, preprompt: also train on the QA set's unanswerable questions, "
           "target the preprompt's \"I don't know.\"", action="store_true")
    option(modes, "--paraphrases", "unsupervised, closed-book: generated paraphrases per chunk", type=int)
    option(modes, "--cloze", "closed-book: fill-in-the-blank questions made from each chunk (a name, number or date "
           "of one of its sentences blanked)", type=int)
    option(modes, "--lora-r", type=int)
    option(modes, "--lora-alpha", type=int)
    option(modes, "--lora-dropout", type=float)
    option(modes, "--lora-targets", '"auto" (attention and MLP projections found in the model), comma-separated module names or "all-linear"')
    option(modes, "--merge", "lora: also write DIR/merged, a plain model folder", action="store_true")
    option(modes, "--virtual-tokens", "prompt-tuning: soft prompt length", type=int)
    option(modes, "--init-text", "prompt-tuning: text the soft prompt starts from (default: the preprompt)")
    option(modes, "--scratch-width", "scratch: hidden size of the small model", type=int)
    option(modes, "--scratch-layers", "scratch: its number of layers", type=int)
    add_config_flags(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = FinetuneConfig(args.mode, **given(args, FinetuneConfig))
    finetune(settings, config_from_args(args))
    return 0


if __name__ == "__main__":
    run_cli(main)
