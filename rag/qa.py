"""QA sets: load SQuAD v1.1 JSON or JSONL, and split them deterministically.

JSONL lines are ``{"question", "answers": [...], "source"?, "page"?, "context"?}``;
SQuAD v1.1 JSON gives each question its paragraph as ``context`` and the
article title as ``source``. A malformed line is a ``ValueError`` naming the
file and line.

The train/validation split hashes each question with a seed, so it does not
depend on file order and every stage (fine-tuning, eval) agrees on which
questions were held out and never trained on.

    >>> items = load_qa("corpora/vellmar-qa.jsonl")            # doctest: +SKIP
    >>> train, val = split(items, val_fraction=0.25, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.passage import Chunk
from rag.jsonl import read_jsonl


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: list[str] = field(default_factory=list)  # empty: the corpus does not hold the answer
    source: str | None = None  # gold document (path relative to the corpus, or a SQuAD title)
    page: int | None = None
    context: str | None = None  # gold passage, when the QA set carries one (SQuAD)


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
    return QAItem(row["question"], list(answers), row.get("source"), row.get("page"), row.get("context"))


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


class GoldPassages:
    """Find a QA item's gold chunks among an index's chunks (listed in id order).

    The gold document is the chunk source ending in ``/`` + ``item.source`` (on
    ``item.page`` when it names one); its chunks that contain an answer,
    case-insensitively, are the gold passages.
    """

    def __init__(self, chunks: list[Chunk]):
        self.chunks = chunks
        self.by_source: dict[str, list[int]] = {}
        for chunk_id, chunk in enumerate(chunks):
            self.by_source.setdefault(chunk.source, []).append(chunk_id)

    def find(self, item: QAItem) -> tuple[list[int], list[int]]:
        """(ids of the gold document's chunks, ids of those containing an answer)."""
        suffix = "/" + (item.source or "").lstrip("/")
        document = [
            chunk_id
            for source, ids in self.by_source.items()
            if source.endswith(suffix)
            for chunk_id in ids
            if item.page is None or self.chunks[chunk_id].page == item.page
        ]
        answers = [answer.lower() for answer in item.answers]
        return document, [i for i in document if any(answer in self.chunks[i].text.lower() for answer in answers)]
