"""QA sets: load SQuAD v1.1 JSON or JSONL, split them deterministically, find their gold passages.

JSONL lines are ``{"question", "answers": [...], "source"?, "page"?, "context"?, "kind"?, "also"?}``
(``kind`` names the type of question: name, number, date, place, yesno, multi...; ``also`` lists
the other files a multi-passage question needs);
SQuAD v1.1 JSON gives each question its paragraph as ``context`` and the
article title as ``source``. A malformed line is a ``ValueError`` naming the
file and line.

The train/validation split hashes each question with a seed, so it does not
depend on file order and every stage (fine-tuning, eval) agrees on which
questions were held out and never trained on. Cross-validation assigns each
question to one of K folds the same way (:func:`fold_of`): ``rag.finetune
--folds K --fold I`` trains on the other folds and ``rag.eval --folds K`` scores
fold I's questions with that artifact only. Both split per question by default;
with ``split_by="document"`` (:data:`SPLIT_UNITS`) every question about the same
document (:func:`document_of`: a SQuAD paragraph, else the source file) falls
on the same side, so held-out questions are about documents no model trained on.

Answers are compared after SQuAD normalization (Rajpurkar et al., 2016: lower
case, no punctuation, no articles a/an/the, single spaces) and on word
boundaries, so "9" is not found in "90 nights" nor "6" in "1956". French
answers drop French articles instead, elided ones included (le, la, les, l',
un, une, des, du, d'): see :mod:`rag.language`.

    >>> items = load_qa("corpora/vellmar-qa.jsonl")            # doctest: +SKIP
    >>> train, val = split(items, val_fraction=0.25, seed=0)   # doctest: +SKIP
    >>> fold_of("Who founded the seed library?", folds=5, seed=0) in range(5)
    True
    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> matched_answers("at least 90 nights on the island", ["nine", "9"])
    []
    >>> normalize_answer("L'Église d'Orla, la nuit", "fr")
    'église orla nuit'
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.jsonl import read_jsonl
from rag.language import DEFAULT_LANGUAGE, language
from rag.passage import Chunk

PUNCTUATION = set(string.punctuation)
YES_NO = "yesno"  # the kind of a question answered yes or no: no answer string locates its evidence


def normalize_answer(text: str, language_code: str = DEFAULT_LANGUAGE) -> str:
    """SQuAD v1.1 normalization: lower case, no punctuation, no articles (of ``language_code``), single spaces."""
    lang = language(language_code)
    text = text.lower()
    if lang.elisions:  # before the apostrophe goes: "l'église" -> "église", not "léglise"
        text = lang.elisions.sub(" ", text)
    text = "".join(ch for ch in text if ch not in PUNCTUATION and ch not in lang.punctuation)
    return " ".join(lang.articles.sub(" ", text).split())


def matched_answers(text: str, answers: Sequence[str], language_code: str = DEFAULT_LANGUAGE) -> list[str]:
    """The ``answers`` that occur in ``text`` as whole words, after normalization of both."""
    padded = f" {normalize_answer(text, language_code)} "
    return [answer for answer in answers if (words := normalize_answer(answer, language_code)) and f" {words} " in padded]


def question_fingerprint(question: str) -> str:
    """A short hash of a question's text (whitespace folded): run.json lists what was trained on by these."""
    return hashlib.sha256(" ".join(question.split()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: list[str] = field(default_factory=list)  # empty: the corpus does not hold the answer
    source: str | None = None  # gold document (path relative to the corpus, or a SQuAD title)
    page: int | None = None
    context: str | None = None  # gold passage, when the QA set carries one (SQuAD)
    kind: str | None = None  # name, number, date, place, yesno, multi, other, unanswerable
    also: tuple[str, ...] = ()  # other files a multi-passage question needs


def load_qa(path: str | Path) -> list[QAItem]:
    path = Path(path)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"QA file {path} does not exist")
        return _load_squad(path, path.read_text(encoding="utf-8"))
    return read_jsonl(path, _qa_item, 'a JSON object with "question" and "answers"')


def _qa_item(row: dict) -> QAItem:
    answers = row.get("answers", [])
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(row["question"], str) or not all(isinstance(a, str) for a in answers):
        raise TypeError("question must be a string and answers a list of strings")
    return QAItem(
        row["question"], list(answers), row.get("source"), row.get("page"), row.get("context"), row.get("kind"), tuple(row.get("also", ()))
    )


def _load_squad(path: Path, text: str) -> list[QAItem]:
    try:
        articles = json.loads(text)["data"]
        items = [
            QAItem(qa["question"], [a["text"] for a in qa["answers"]], article["title"], None, paragraph["context"])
            for article in articles
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not SQuAD v1.1 JSON (data/paragraphs/qas/answers) ({type(error).__name__}: {error})") from error
    if not items:
        raise ValueError(f"{path} holds no questions")
    return items


SPLIT_UNITS = ("question", "document")  # what a split or a fold keeps on one side


def check_split_unit(split_by: str) -> None:
    """Refuse a ``--split-by`` value that is not one of :data:`SPLIT_UNITS` (rag.finetune and rag.eval alike)."""
    if split_by not in SPLIT_UNITS:
        raise ValueError(f"unknown --split-by {split_by!r}; choose one of {', '.join(SPLIT_UNITS)}")


def document_of(item: QAItem) -> str:
    """The document a question is about: its context passage (a SQuAD paragraph), else its source file, else itself."""
    return item.context if item.context is not None else item.source or item.question


def is_validation(question: str, val_fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{question}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split(items: list, val_fraction: float = 0.25, seed: int = 0, key=lambda item: item.question) -> tuple[list, list]:
    """(train, validation), decided per item by a seeded hash of ``key(item)``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    train, val = [], []
    for item in items:
        (val if is_validation(key(item), val_fraction, seed) else train).append(item)
    return train, val


def fold_of(question: str, folds: int, seed: int = 0) -> int:
    """The cross-validation fold (0..folds-1) of a question, by a seeded hash of its fingerprint (whitespace folded)."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    digest = hashlib.sha256(f"{seed}:fold:{question_fingerprint(question)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def fold_split(items: list, folds: int, fold: int, seed: int = 0, key=lambda item: item.question) -> tuple[list, list]:
    """(the other folds' items, fold ``fold``'s items): what a fold's model trains on, and what it alone scores."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be between 0 and {folds - 1} for {folds} folds, got {fold}")
    others, held_out = [], []
    for item in items:
        (held_out if fold_of(key(item), folds, seed) == fold else others).append(item)
    return others, held_out


class GoldPassages:
    """Find a QA item's gold chunks among an index's chunks (listed in id order).

    The gold document is the chunks whose source ends in ``/`` + ``item.source``
    (on ``item.page`` when it names one). Its gold chunks are those holding the
    most answers, then the longest ones, matched on word boundaries
    (:func:`matched_answers`). A yes/no question has no answer string to match:
    none of its chunks is singled out.
    """

    def __init__(self, chunks: list[Chunk]):
        self.chunks = chunks
        self.by_source: dict[str, list[int]] = {}
        for chunk_id, chunk in enumerate(chunks):
            self.by_source.setdefault(chunk.source, []).append(chunk_id)

    def find(self, item: QAItem) -> tuple[list[int], list[int]]:
        """(ids of the gold document's chunks, ids of its gold chunks: none when no chunk holds an answer)."""
        suffix = "/" + (item.source or "").lstrip("/")
        document = [
            chunk_id
            for source, ids in self.by_source.items()
            if source.endswith(suffix)
            for chunk_id in ids
            if item.page is None or self.chunks[chunk_id].page == item.page
        ]
        if item.kind == YES_NO:
            return document, []
        scores = {}
        for chunk_id in document:
            chunk = self.chunks[chunk_id]
            found = matched_answers(chunk.text, item.answers, chunk.language)
            if found:
                scores[chunk_id] = (len(found), sum(len(normalize_answer(answer, chunk.language)) for answer in found))
        best = max(scores.values(), default=None)
        return document, [chunk_id for chunk_id, score in scores.items() if score == best]
