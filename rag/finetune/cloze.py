"""Fill-in-the-blank questions made from the corpus, for the closed-book objective (``--cloze N``).

A model that has read a document still has to learn to *recall* its facts when
asked: Jiang et al. 2024 find question-answer training is what makes absorbed
facts retrievable, and Allen-Zhu and Li 2023 that a fact must be asked for in
varied forms. The 135M generator cannot write usable questions with answers
(asked for either, it names the wrong span), so the questions are made by rule:
a sentence of a chunk with one name, number or date blanked out, the blanked
span as the answer. No language model is involved, every answer is verbatim in
its chunk, and the same seed gives the same questions.

    >>> blanks("The cooperative was founded on 9 October 1891 in the Salt Loft.")  # doctest: +NORMALIZE_WHITESPACE
    [('The cooperative was founded on ____ in the Salt Loft.', '9 October 1891'),
     ('The cooperative was founded on 9 October 1891 in the ____.', 'Salt Loft')]
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re

from rag.finetune.examples import Example
from rag.language import LANGUAGES, resolve_language
from rag.prompt import prompt_text

BLANK = "____"
MIN_WORDS, MAX_WORDS = 6, 60  # shorter sentences say too little to recall from; longer ones are tables or lists run together

_MONTHS = "|".join(month for language in LANGUAGES.values() for month in language.months)
_UPPER = "A-ZÀ-ÖØ-Þ"
_NAME_WORD = rf"[{_UPPER}][\w'’-]*"
# A date ("9 October 1891", "1 February", "November 2021", "1er mars"), a number ("1,240", "3.5", "7 Brine Street":
# a number and a name), or a run of capitalised words joined by lower-case particles, perhaps numbered ("Port Aldric",
# "Quay 1", "Claude 2").
SPAN = re.compile(
    rf"\b\d{{1,2}}(?:er)?\s+(?:{_MONTHS})(?:\s+\d{{4}})?\b|\b(?:{_MONTHS})\s+\d{{4}}\b"
    rf"|\b\d(?:[\d,.]*\d)?(?:\s+{_NAME_WORD})*\b"
    rf"|\b{_NAME_WORD}(?:\s+(?:(?:of|the|de|du|des|la|le|d')\s+)?{_NAME_WORD})*(?:\s+\d+\b)?"
)
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[\d\"«*(" + _UPPER + "])")
ENDS_A_SENTENCE = re.compile(r"[.!?;…][\"»”)]?$")
LIST_ITEM = re.compile(r"^(?:[-+*]|\d+[.)])\s+")
# Markup a cloze must not blank or read through: images, link targets, HTML and MDX tags, bare URLs, emphasis marks.
MARKUP = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"<[^>]*>|\{\{.*?\}\}|https?://\S+"), ""),
    (re.compile(r"\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)|`"), ""),
]
# A capitalised word right after these is capitalised by position (a quote, a list after a colon), not a name.
OPENS_A_CLAUSE = re.compile(r"[:«\"“(]\s*$")


def is_function_word(word: str) -> bool:
    word = word.lower()
    return any(word in language.function_words or language.articles.fullmatch(word) for language in LANGUAGES.values())


def sentences(text: str) -> list[str]:
    """The prose sentences of a chunk: headings, tables, code and markup left out.

    A list item is a sentence of its own, with or without a full stop; other lines without one ran together.
    """
    paragraphs: list[tuple[list[str], bool]] = [([], False)]  # (lines, is a list item)
    for line in text.splitlines():
        stripped = line.strip()
        skipped = not stripped or stripped.startswith(("#", "|", "```", ">", "<", "{"))
        item = LIST_ITEM.match(stripped) is not None
        if skipped or item:
            paragraphs.append(([], item))
        if not skipped:
            paragraphs[-1][0].append(LIST_ITEM.sub("", stripped))
    found = []
    for lines, is_item in paragraphs:
        prose = " ".join(lines)
        for pattern, replacement in MARKUP:
            prose = pattern.sub(replacement, prose)
        for sentence in SENTENCE_END.split(prose):
            sentence = " ".join(sentence.split())
            if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and (is_item or ENDS_A_SENTENCE.search(sentence)):
                found.append(sentence)
    return found


def blanks(sentence: str) -> list[tuple[str, str]]:
    """(sentence with one span blanked, span) for each name, number or date in it.

    The first word, and one after a colon or an opening quote, are capitalised whatever they are: a lone one there is
    no name; a run of them is ("Maren Quillfeather, a net-maker"), but for a leading function word ("In February 1891").
    """
    found = []
    for match in SPAN.finditer(sentence):
        first, *more = match.group(0).split()
        if match.start() == 0 or OPENS_A_CLAUSE.search(sentence[: match.start()]):
            if not more:
                continue
            if is_function_word(first):  # the name further in: "In the Salt Loft" -> "Salt Loft"
                match = SPAN.search(sentence, match.start() + len(first), match.end())
                if match is None:
                    continue
        span = match.group(0)
        if len(span) > 1 and not is_function_word(span):
            found.append((sentence[: match.start()] + BLANK + sentence[match.end():], span))
    return found


def cloze_questions(texts: list[str], per_text: int, language_setting: str, seed: int) -> list[Example]:
    """Up to ``per_text`` fill-in-the-blank questions from each text, from different sentences where it has enough.

    ``language_setting`` is ``Config.language`` ("auto" detects each text's), which picks the instruction's words.
    """
    questions = []
    for text in texts:
        # Seeded by the text, so a chunk gets the same questions whatever else the corpus holds.
        rng = random.Random(hashlib.sha256(f"{seed}:{text}".encode()).digest())
        candidates = [blanks(sentence) for sentence in sentences(text)]
        rng.shuffle(candidates)
        for candidate in candidates:
            rng.shuffle(candidate)
        # Round-robin over the sentences: one blank from each before a second from any.
        chosen = [pair for round_ in itertools.zip_longest(*candidates) for pair in round_ if pair][:per_text]
        label = prompt_text(resolve_language(language_setting, text)).fill_in_blank
        questions += [Example(f"{label} {blanked}", text, (span,)) for blanked, span in chosen]
    return questions
