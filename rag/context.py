"""Sentence context: the sentences of the retrieved passages closest to the question, under a token budget.

A 135M generator reads a 1,000-token context slowly and is easily led astray by it. With
``config.context = "sentences"`` the prompt keeps only the passage sentences the embedder
(the one retrieval already loaded) scores closest to the question, as many as fit in
``config.sentence_context_tokens``, each under its own passage's number so citations stay valid:

    [1] ferry.md
    The ferry Saint Ives leaves at nine.
    It carries forty cars.

    [3] harbour.pdf, page 2
    The harbour master is Ilse Varga.

Passage [2] had no sentence close enough, so it is left out but keeps no other number.

    >>> split_sentences("The ferry leaves at nine. It carries forty cars!\\n\\n# Timetable")
    ['The ferry leaves at nine.', 'It carries forty cars!', '# Timetable']
"""

from __future__ import annotations

import re

import numpy as np

from rag.embed import embed_texts
from rag.passage import Passage

# A sentence ends at . ! ? followed by a space and an opening capital, digit or quote; a line break ends one too.
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9À-Ý])|\s*\n\s*")
CONTEXTS = ("passages", "sentences")


def split_sentences(text: str) -> list[str]:
    return [sentence.strip() for sentence in SENTENCE_BREAK.split(text) if sentence.strip()]


def closest_sentences(question: str, passages: list[Passage], embedder, tokenizer, budget: int, batch_size: int) -> dict[int, list[str]]:
    """Kept sentences by passage index (0-based), each passage's in their original order.

    Sentences are taken best first (cosine similarity to the question) while their tokens
    fit in ``budget``; one too long is passed over for shorter ones after it.
    """
    sentences = [(number, sentence) for number, passage in enumerate(passages) for sentence in split_sentences(passage.text)]
    if not sentences:
        return {}
    vectors = embed_texts(embedder, [question] + [sentence for _, sentence in sentences], batch_size)  # (1 + n, dim), unit length
    similarity = vectors[1:] @ vectors[0]  # (n,)
    costs = [len(ids) + 1 for ids in tokenizer([sentence for _, sentence in sentences], add_special_tokens=False)["input_ids"]]
    kept: set[int] = set()
    room = budget
    for position in np.argsort(-similarity, kind="stable"):
        if costs[position] <= room:
            kept.add(int(position))
            room -= costs[position]
    chosen: dict[int, list[str]] = {}
    for position in sorted(kept):
        number, sentence = sentences[position]
        chosen.setdefault(number, []).append(sentence)
    return chosen
