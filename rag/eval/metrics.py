"""Answer metrics: SQuAD exact match and token F1, groundedness, abstention, bootstrap CIs.

Exact match and F1 follow the official SQuAD v1.1 script (Rajpurkar et al.,
2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text"): answers
normalized by :func:`rag.qa.normalize_answer`, then the best score over all
gold answers. Retrieval metrics (recall@k, MRR,
nDCG) live in :mod:`rag.metrics`.

Confidence intervals are percentile bootstrap intervals of the mean (Efron,
1979, "Bootstrap methods: another look at the jackknife"): resample the
per-question scores with replacement, seeded, and read the 2.5th and 97.5th
percentiles of the resampled means. Two systems are compared on their
per-question differences (a paired bootstrap, Koehn, 2004, "Statistical
significance tests for machine translation evaluation"): both answered the same
questions, so the spread due to question difficulty cancels out, where two
unpaired intervals keep it and call real differences noise. Whether a
difference is "clear" is a paired randomization test, with Holm's correction
when a verdict makes several comparisons at once.

    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> exact_match("the Eiffel tower", ["Eiffel Tower", "Paris"])
    1.0
    >>> round(token_f1("built in 1889 in Paris", ["1889"]), 4)
    0.3333
    >>> abstained("I don't know.")
    True
    >>> abstained("Je ne sais pas.")
    True
    >>> exact_match("la poésie", ["poésie"], "fr")
    1.0
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rag.language import DEFAULT_LANGUAGE, LANGUAGES, language
from rag.qa import normalize_answer


# Declining in any supported language counts: a model may answer a French question in English.
ABSTENTION = re.compile("|".join(f"(?:{lang.abstention})" for lang in LANGUAGES.values()), re.IGNORECASE)


def exact_match(prediction: str, golds: Sequence[str], language_code: str = DEFAULT_LANGUAGE) -> float:
    """1.0 if the normalized prediction equals any normalized gold answer, else 0.0."""
    if not golds:
        raise ValueError("exact match needs at least one gold answer (score unanswerable questions with abstained)")
    return float(any(normalize_answer(prediction, language_code) == normalize_answer(gold, language_code) for gold in golds))


def _f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    common = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str], language_code: str = DEFAULT_LANGUAGE) -> float:
    """Best bag-of-tokens F1 between the normalized prediction and any gold answer."""
    if not golds:
        raise ValueError("token F1 needs at least one gold answer (score unanswerable questions with abstained)")
    tokens = normalize_answer(prediction, language_code).split()
    return max(_f1(tokens, normalize_answer(gold, language_code).split()) for gold in golds)


def content_words(text: str, language_code: str = DEFAULT_LANGUAGE) -> list[str]:
    """Words of ``text`` that carry a claim: function words carry none (normalization already drops articles)."""
    function_words = language(language_code).function_words
    return [word for word in normalize_answer(text, language_code).split() if word not in function_words]


def groundedness(answer: str, contexts: Sequence[str], language_code: str = DEFAULT_LANGUAGE) -> float | None:
    """Share of the answer's content words that occur in the retrieved context.

    ``None`` when there is no context (closed book) or the answer has no content
    word, so that such answers do not count as perfectly or not at all grounded.
    """
    words = content_words(answer, language_code)
    if not contexts or not words:
        return None
    context = set(normalize_answer(" ".join(contexts), language_code).split())
    return sum(word in context for word in words) / len(words)


def abstained(answer: str) -> bool:
    """The answer declines, e.g. "I don't know" or "The context does not contain the answer"."""
    return bool(ABSTENTION.search(answer))


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float


def bootstrap_ci(values: Sequence[float], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Interval | None:
    """Percentile bootstrap interval of the mean of ``values``; ``None`` for no values.

    >>> bootstrap_ci([0.0, 1.0, 1.0, 1.0], seed=0).mean
    0.75
    """
    if len(values) == 0:
        return None
    scores = np.asarray(values, dtype=np.float64)
    rows = np.random.default_rng(seed).integers(0, len(scores), size=(resamples, len(scores)))  # (resamples, n)
    means = scores[rows].mean(axis=1)  # (resamples,)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(scores.mean()), float(low), float(high))


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], resamples: int = 1000, seed: int = 0) -> Interval | None:
    """Mean of ``a[q] - b[q]`` over the questions both scored, with its bootstrap interval; ``None`` if none shared.

    >>> paired_difference({"q1": 1.0, "q2": 0.5}, {"q1": 0.0, "q2": 0.5, "q3": 1.0}).mean
    0.5
    """
    shared = sorted(a.keys() & b.keys())
    return bootstrap_ci([a[q] - b[q] for q in shared], resamples=resamples, seed=seed)


def paired_p_value(a: Mapping[str, float], b: Mapping[str, float], resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of "``a`` and ``b`` score alike" over the questions both scored.

    A paired randomization test (Fisher; Noreen, 1989): under the null each
    per-question difference is as likely to have either sign, so the p-value is
    the share of random sign flips whose mean difference is at least as far
    from 0 as the observed one (with the observed assignment counted, so never 0).

    >>> paired_p_value({"q1": 0.5}, {"q1": 0.5})
    1.0
    """
    differences = np.asarray([a[q] - b[q] for q in sorted(a.keys() & b.keys())], dtype=np.float64)
    if not differences.any():
        return 1.0
    observed = abs(differences.mean())
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(resamples, len(differences)))  # (resamples, n)
    flipped = np.abs((signs * differences).mean(axis=1))  # (resamples,)
    extreme = int((flipped >= observed - 1e-12).sum())
    return (extreme + 1) / (resamples + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (Holm, 1979), in the input order: compare each with the level as is.

    Sorted ascending, the i-th smallest (from 0) is multiplied by (m - i), and
    each adjusted value is kept at least as large as the one before it; the
    family-wise error rate stays under the level whatever the dependence.

    >>> holm([0.04, 0.01, 0.03])
    [0.06, 0.03, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = round(running, 12)
    return adjusted
