"""Training examples: (query, gold passage, answers), and the ``--pairs`` JSONL format they are read from and saved as.

    >>> Example("Who founded it?", "Agathe Morrow founded the seed library.", ("Agathe Morrow",)).answers
    ('Agathe Morrow',)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rag.jsonl import read_jsonl
from rag.qa import matched_answers


@dataclass(frozen=True)
class Example:
    query: str
    positive: str | None  # the gold passage; None for a question the corpus does not answer (FinetuneConfig.unanswerable)
    answers: tuple[str, ...] = ()  # reference answers; empty for retrieval-only pairs and unanswerable questions
    negative: str | None = None  # a hard negative passage
    source: str | None = None  # file or title of the gold passage, shown in generator prompts
    page: int | None = None
    document: str | None = None  # what --split-by document groups by (rag.qa.document_of); None: the positive itself

    @property
    def unanswerable(self) -> bool:
        return self.positive is None

    @property
    def document_key(self) -> str:
        return self.document or self.positive

    def distracts(self, text: str) -> bool:
        """Whether ``text`` can stand beside this question as a negative: not its gold passage, and holding none of its
        answers (one that did would be a second positive, and make a citation ambiguous)."""
        return text != self.positive and not matched_answers(text, self.answers)


def _pair(row: dict) -> Example:
    query, positive, negative = row["query"], row["positive"], row.get("negative")
    if not all(isinstance(text, str) and text.strip() for text in (query, positive)) or not isinstance(negative, str | None):
        raise TypeError("query and positive must be non-empty strings, negative a string")
    return Example(query, positive, negative=negative or None, source=row.get("source"))


def load_pairs(path: str | Path) -> list[Example]:
    return read_jsonl(path, _pair, 'a JSON object with "query" and "positive"')


def write_pairs(examples: list[Example], path: Path) -> None:
    """The ``--pairs`` format, so generated data can be inspected and reused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"query": e.query, "positive": e.positive, "source": e.source}, ensure_ascii=False) for e in examples]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
