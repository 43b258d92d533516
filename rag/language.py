"""Languages: detection, BM25 analysis (stop words, stemming), answer normalization and abstention phrases.

Each supported language is one :class:`Language` in :data:`LANGUAGES`; adding
one is adding an entry here (and its prompt texts in :mod:`rag.prompt`).
``Config.language`` is ``auto`` (detect per chunk at ingest and per question
at query time) or a fixed code; :func:`resolve_language` applies it.

Detection counts function words (a stop-word-frequency heuristic, after
Grefenstette, 1995, "Comparing two language identification schemes"): the
language whose own function words, those no other supported language shares,
occur most often wins; a text with none falls back to a default. On the 5
French seed documents and the 8 files of the English Vellmar corpus it labels
every chunk correctly (see ``tests/test_french.py``), with no model to download.

BM25 tokenizes each text with its language's stop words and Snowball stemmer
(PyStemmer), so "fondée" matches "fondé" and "bibliothèques" "bibliothèque".

    >>> detect_language("Qui a fondé la bibliothèque de semences ?")
    'fr'
    >>> detect_language("Who founded the seed library?")
    'en'
    >>> bm25_tokens(["Les bibliothèques fondées"], ["fr"])
    [['bibliothequ', 'fond']]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import Stemmer
from bm25s.stopwords import STOPWORDS_FRENCH

AUTO = "auto"
WORD = re.compile(r"\w+")
DEFAULT_LANGUAGE = "en"  # a text with no function word of any language (a name, a number)


@dataclass(frozen=True)
class Language:
    code: str
    stemmer: str  # Snowball algorithm name in PyStemmer
    bm25_stopwords: str  # bm25s stop word list
    function_words: frozenset[str]  # ignored by groundedness; detection counts those of this language only
    articles: re.Pattern  # removed by normalize_answer, as SQuAD removes a/an/the
    elisions: re.Pattern | None  # elided articles ("l'", "d'"), removed before punctuation
    punctuation: str  # removed by normalize_answer besides ASCII punctuation (SQuAD's string.punctuation)
    abstention: str  # regex of the ways an answer declines
    months: tuple[str, ...]  # month names, for the dates rag.finetune.cloze blanks


ENGLISH = Language(
    code="en",
    stemmer="english",
    bm25_stopwords="en",
    function_words=frozenset(
        "about above after again all also am and any are as at be because been before being below between both but by "
        "can could did do does doing down during each few for from further had has have having he her here hers him his "
        "how i if in into is it its just me more most my no nor not now of off on once only or other our out over own "
        "same she should so some such than that their theirs them then there these they this those through to too under "
        "until up very was we were what when where which while who whom why will with would you your".split()
    ),
    articles=re.compile(r"\b(a|an|the)\b"),
    elisions=None,
    punctuation="",  # SQuAD's own normalization, unchanged
    months=tuple("January February March April May June July August September October November December".split()),
    # The preprompts ask the model to say "I don't know"; a small model paraphrases it, or repeats the
    # preprompt's own "the context does not contain the answer". Each branch is a wording seen in real outputs.
    abstention=(
        r"\bi (?:don['’]?t|do not) know\b"
        r"|\b(?:context|passages?|text|documents?|sources?) (?:does not|doesn['’]?t|do not|don['’]?t) "
        r"(?:contain|mention|say|state|provide|specify|include|give)\b"
        r"|\bnot (?:in|mentioned in|given in|stated in|provided in|found in|specified in|included in) the "
        r"(?:context|passages?|text|documents?)\b"
        r"|\b(?:there is|there's|i have|i found) no (?:information|mention|answer)\b"
        r"|\bcan(?:not|['’]?t) (?:answer|be answered|be determined|determine|find)\b"
        r"|\bnot enough information\b"
    ),
)

FRENCH = Language(
    code="fr",
    stemmer="french",
    bm25_stopwords="fr",
    function_words=frozenset(STOPWORDS_FRENCH) | frozenset("cette cet dont où mais donc car ni sans sous entre".split()),
    articles=re.compile(r"\b(le|la|les|un|une|des|du)\b"),
    elisions=re.compile(r"\b[ld]['’]"),
    punctuation="’«»…–—",
    months=tuple("janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split()),
    abstention=(
        r"\bje ne (?:le )?sais pas\b"
        r"|\b(?:contexte|passages?|texte|documents?|sources?) ne (?:contien(?:t|nen?t)|mentionnen?t?|précisen?t?|dit|disent"
        r"|donnen?t?|fourni(?:t|ssent)|indiquen?t?|comporten?t?) (?:pas|aucune?)\b"
        r"|\baucune? (?:information|mention|réponse|indication|donnée)s?\b"
        r"|\b(?:pas|rien|non) (?:mentionnée?s?|indiquée?s?|précisée?s?|trouvée?s?|donnée?s?) dans (?:le|les|ce) "
        r"(?:contexte|passages?|texte|documents?)\b"
        r"|\b(?:impossible|pas possible) de (?:répondre|déterminer|savoir|trouver)\b"
        r"|\bne (?:peux|peut|pouvons) pas (?:répondre|être déterminée?|déterminer|trouver)\b"
        r"|\bpas (?:assez|suffisamment) d['’]informations?\b"
    ),
)

LANGUAGES: dict[str, Language] = {language.code: language for language in (ENGLISH, FRENCH)}


def language(code: str) -> Language:
    """The :class:`Language` of ``code``; an unknown code is a ``ValueError`` listing the supported ones."""
    if code not in LANGUAGES:
        raise ValueError(f"unsupported language {code!r}; choose {AUTO} or one of {', '.join(LANGUAGES)}")
    return LANGUAGES[code]


@functools.cache
def _detection_words() -> dict[str, frozenset[str]]:
    """Each language's function words that no other supported language has ("on", "me", "as" count for none)."""
    return {
        code: lang.function_words - frozenset().union(*(o.function_words for o in LANGUAGES.values() if o is not lang))
        for code, lang in LANGUAGES.items()
    }


def detect_language(text: str, default: str = DEFAULT_LANGUAGE) -> str:
    """The supported language whose function words occur most in ``text``; ``default`` on no evidence or a tie."""
    words = WORD.findall(text.lower())
    counts = {code: sum(word in own for word in words) for code, own in _detection_words().items()}
    ranked = sorted(counts.values(), reverse=True)
    if ranked[0] == 0 or (len(ranked) > 1 and ranked[0] == ranked[1]):
        return default
    return max(counts, key=counts.get)


def resolve_language(setting: str, text: str, default: str = DEFAULT_LANGUAGE) -> str:
    """``Config.language`` applied to one text: a fixed code as is, ``auto`` detected from the text."""
    if setting == AUTO:
        return detect_language(text, default)
    return language(setting).code


@functools.cache
def _stemmer(algorithm: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(algorithm)


def bm25_tokens(texts: Sequence[str], languages: Sequence[str]) -> list[list[str]]:
    """BM25 terms of each text, with its language's stop words and stemmer (``languages[i]`` for ``texts[i]``)."""
    if len(texts) != len(languages):
        raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
    tokens: list[list[str]] = [[] for _ in texts]
    for code in set(languages):
        lang = language(code)
        rows = [i for i, text_language in enumerate(languages) if text_language == code]
        analyzed = bm25s.tokenize(
            [texts[i] for i in rows], stopwords=lang.bm25_stopwords, stemmer=_stemmer(lang.stemmer), return_ids=False, show_progress=False
        )
        for i, terms in zip(rows, analyzed):
            tokens[i] = list(terms)
    return tokens
