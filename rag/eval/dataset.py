"""The questions of one eval run: split, seeded sample, corpus-from-QA, and each question's gold chunks.

A question keeps the id of its line in the QA file (``q00012``; ``p00003`` for
the forgetting probe), so ids stay the same whatever ``--split`` or ``--limit``
picks, and a resumed run recognises the questions it already answered.

Gold chunks, the relevant ids of the retrieval metrics: the chunks of the gold
document (its path ends with ``/`` + the item's ``source``, on the item's page
if it names one) that hold the most and longest answers, matched as whole
words after SQuAD normalization (:class:`rag.qa.GoldPassages`); when no chunk
holds an answer (it is split across chunks, paraphrased, or a yes/no), every
chunk of the gold document. A question whose gold document is not in the index
(no ``source``, an unanswerable question, a SQuAD title) is scored on its
answer only. :class:`GoldChunks` counts each case, for the report.

    >>> items = load_qa("corpora/vellmar-qa.jsonl")                              # doctest: +SKIP
    >>> questions = select(items, split="val", limit=8, seed=0)                  # doctest: +SKIP
    >>> gold = gold_chunk_ids(Index.open("indexes/vellmar"), questions).relevant # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rag.index import Index
from rag.qa import GoldPassages, QAItem, document_of, split


@dataclass(frozen=True)
class Question:
    qid: str
    item: QAItem


def select(
    items: list[QAItem],
    split_name: str = "all",
    limit: int | None = None,
    seed: int = 0,
    prefix: str = "q",
    val_fraction: float = 0.25,
    split_seed: int = 0,
    split_by: str = "question",
) -> list[Question]:
    """The questions to evaluate: the ``split_name`` part (the split rag.finetune makes), then a seeded sample."""
    questions = [Question(f"{prefix}{number:05d}", item) for number, item in enumerate(items)]
    if split_name != "all":
        # rag.finetune --seed S --val-fraction F trains on the train part of this same call.
        train, val = split(questions, val_fraction, split_seed, key=split_key(split_by))
        questions = val if split_name == "val" else train
    if limit is not None and limit < len(questions):
        questions = sorted(_stratified_sample(questions, limit, random.Random(seed)), key=lambda question: question.qid)
    return questions


def split_key(split_by: str) -> Callable[[Question], str]:
    """What rag.finetune --split-by ``split_by`` splits a question by: its text, or its document (rag.qa.document_of)."""
    return (lambda question: document_of(question.item)) if split_by == "document" else (lambda question: question.item.question)


def _stratified_sample(questions: list[Question], size: int, rng: random.Random) -> list[Question]:
    """``size`` questions keeping the share of unanswerable ones, at least one when any exist and size > 1.

    Why: the few unanswerable questions are the only measure of abstention, and a
    plain sample of a small ``--limit`` often draws none of them.
    """
    unanswerable = [q for q in questions if not q.item.answers]
    answerable = [q for q in questions if q.item.answers]
    share = round(size * len(unanswerable) / len(questions))
    wanted = max(share, 1 if unanswerable and size > 1 else 0, size - len(answerable))
    taken = min(wanted, len(unanswerable))
    return rng.sample(unanswerable, taken) + rng.sample(answerable, size - taken)


def write_qa_corpus(items: list[QAItem], folder: Path) -> list[QAItem]:
    """Write each distinct context as ``folder/p0001.txt``...; return the items with that file as gold source.

    With SQuAD this makes the paragraphs the corpus, so a SQuAD file alone is a
    complete benchmark and retrieval is scored per paragraph.
    """
    names: dict[str, str] = {}
    for item in items:
        if item.context:
            names.setdefault(item.context, f"p{len(names) + 1:04d}.txt")
    if not names:
        raise ValueError("--corpus-from-qa needs a QA set with contexts (SQuAD JSON, or JSONL with \"context\")")
    folder.mkdir(parents=True, exist_ok=True)
    for context, name in names.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != context:
            path.write_text(context, encoding="utf-8")
    return [replace(item, source=names[item.context], page=None) if item.context else item for item in items]


@dataclass(frozen=True)
class GoldChunks:
    relevant: dict[str, list[int]]  # qid -> ids of its relevant chunks; absent: not scored for retrieval
    holding_answer: int  # answerable questions whose gold chunks hold an answer
    whole_document: int  # answerable questions with no chunk holding an answer: their whole document counts
    not_indexed: int  # answerable questions whose gold document is not in the index


def gold_chunk_ids(index: Index, questions: list[Question]) -> GoldChunks:
    """Each question's relevant chunks in ``index`` (see the module docstring), and how many fell in each case."""
    finder = GoldPassages(index.chunks())
    relevant, counts = {}, {"holding": 0, "document": 0, "absent": 0}
    for question in questions:
        if not question.item.answers:
            continue
        document, holding = finder.find(question.item) if question.item.source else ([], [])
        if document:
            relevant[question.qid] = holding or document
        counts["holding" if holding else "document" if document else "absent"] += 1
    return GoldChunks(relevant, counts["holding"], counts["document"], counts["absent"])
