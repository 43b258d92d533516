"""Data written by the local generator: questions for chunks, and paraphrases of chunks.

``synthetic_pairs`` asks the generator for one question per chunk of an index,
as LlamaIndex's ``generate_qa_embedding_pairs`` does with a hosted LLM, keeps
the well-formed ones and saves them as ``out/data/synthetic-pairs.jsonl``
(the ``--pairs`` format: inspect it, edit it, reuse it).

``paraphrase`` rewrites chunks for unsupervised knowledge injection: Ovadia et
al. 2024 ("Fine-tuning or retrieval?") found a fact has to be seen in several
phrasings before continued training makes the model recall it.

    >>> pairs = synthetic_pairs(Index.open("/tmp/i"), FinetuneConfig("embeddings", "/tmp/e", synthetic=True), Config())  # doctest: +SKIP
    >>> is_good_question("Who chaired the cooperative first?", "...")
    True
    >>> is_good_question("the the the the the?", "...")
    False
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rag.config import Config
from rag.finetune.config import FinetuneConfig
from rag.finetune.examples import Example, load_pairs, write_pairs
from rag.generate import Generator
from rag.index import Index
from rag.prompt import BUILTIN_FEW_SHOT, render

QUESTION_TOKENS = 48
PARAPHRASE_TOKENS = 320  # a chunk is 256 embedder tokens, about as many generator tokens
logger = logging.getLogger(__name__)


def question_turns(passage: str) -> list[dict]:
    # Asked plainly, the 135M model summarises the passage; one worked example makes it ask.
    example = BUILTIN_FEW_SHOT[0]
    ask = "\n\nWrite a question that this text answers."
    return [
        {"role": "system", "content": "You write quiz questions. Reply with one question only."},
        {"role": "user", "content": f"Text: {example.context}{ask}"},
        {"role": "assistant", "content": example.question},
        {"role": "user", "content": f"Text: {passage}{ask}"},
    ]


def paraphrase_turns(passage: str) -> list[dict]:
    return [
        {"role": "system", "content": "Rewrite the text in your own words. Keep every name, number and date."},
        {"role": "user", "content": f"Text: {passage}"},
    ]


def complete(generator: Generator, conversations: list[list[dict]]) -> list[str]:
    """The generator's greedy reply to each conversation."""
    return [g.text for g in generator.generate([render(generator.tokenizer, turns) for turns in conversations])]


def is_good_question(text: str, passage: str) -> bool:
    """One line, 3 to 40 words, ending with '?', not a run of repeated words, not copied from the passage."""
    words = text.lower().split()
    return (
        "\n" not in text
        and 3 <= len(words) <= 40
        and text.endswith("?")
        and len(set(words)) >= 0.6 * len(words)
        and text.rstrip("?").lower() not in passage.lower()
    )


def clean_question(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else ""
    return re.sub(r"^(question\s*\d*\s*:\s*)", "", text, flags=re.IGNORECASE).strip().strip('"')


def synthetic_pairs(index: Index, settings: FinetuneConfig, config: Config) -> list[Example]:
    """(question, chunk) pairs for the index's chunks, saved under ``out/data``; reused by ``--resume``."""
    path = Path(settings.out) / "data" / "synthetic-pairs.jsonl"
    if settings.resume and path.is_file():
        logger.info("reusing the generated pairs in %s", path)
        return load_pairs(path)
    chunks = index.chunks()
    if settings.limit:  # twice the limit: slack for dropped questions and for the split
        chunks = chunks[: 2 * settings.limit]
    generator = Generator.load(config.override({"max_new_tokens": QUESTION_TOKENS}))
    questions = [clean_question(text) for text in complete(generator, [question_turns(c.text) for c in chunks])]
    seen: set[str] = set()
    pairs = []
    for question, chunk in zip(questions, chunks):
        if is_good_question(question, chunk.text) and question.lower() not in seen:
            seen.add(question.lower())
            pairs.append(Example(question, chunk.text, source=chunk.source, page=chunk.page))
    logger.info("generated %d usable questions for %d chunks (%d empty or degenerate); saved to %s",
                len(pairs), len(chunks), len(chunks) - len(pairs), path)
    if not pairs:
        raise ValueError(f"the generator wrote no usable question for the {len(chunks)} chunks of {settings.index}")
    write_pairs(pairs, path)
    return pairs


def paraphrase(model, tokenizer, config: Config, texts: list[str], rounds: int) -> list[str]:
    """``rounds`` paraphrases of each text (greedy, so each round rewrites the previous one); degenerate ones dropped."""
    generator = Generator(model, tokenizer, config.override({"max_new_tokens": PARAPHRASE_TOKENS}))
    kept, current = [], texts
    for _ in range(rounds):
        current = complete(generator, [paraphrase_turns(text) for text in current])
        # A rewrite far shorter than its source, or looping on a few words, teaches nothing.
        kept += [p for p, t in zip(current, texts) if len(p) >= 0.3 * len(t) and len(set(p.split())) >= 0.4 * len(p.split())]
    return kept
