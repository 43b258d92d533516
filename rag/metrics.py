"""Ranking metrics over ranked id lists, with binary relevance.

Each function takes ``ranked_ids`` (best first, as a retriever returns them),
the set of ``relevant_ids`` for that query, and a cut-off ``k``; the caller
averages over queries. Definitions follow the BEIR / TREC conventions that the
sentence-transformers ``InformationRetrievalEvaluator`` also uses, so the
numbers compare with published ones:

- recall@k: fraction of the relevant ids found in the top ``k``;
- MRR@k: 1 / rank of the first relevant id in the top ``k``, 0 if none
  (Voorhees, TREC-8 QA track, 1999);
- nDCG@k: discounted cumulative gain with gain 1 per relevant id and discount
  1 / log2(rank + 1), divided by the gain of an ideal ranking
  (Jarvelin and Kekalainen, 2002).

    >>> recall_at_k([3, 7, 1], {1, 9}, k=3)
    0.5
    >>> mrr_at_k([3, 7, 1], {1, 9}, k=3)
    0.3333333333333333
    >>> round(ndcg_at_k([3, 7, 1], {1, 9}, k=3), 4)
    0.3066
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def _check(relevant_ids: Collection, k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not relevant_ids:
        raise ValueError("a query needs at least one relevant id (skip queries without a gold answer)")


def recall_at_k(ranked_ids: Sequence, relevant_ids: Collection, k: int) -> float:
    _check(relevant_ids, k)
    return len(set(ranked_ids[:k]) & set(relevant_ids)) / len(set(relevant_ids))


def mrr_at_k(ranked_ids: Sequence, relevant_ids: Collection, k: int) -> float:
    _check(relevant_ids, k)
    for rank, item in enumerate(ranked_ids[:k], 1):
        if item in relevant_ids:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_ids: Sequence, relevant_ids: Collection, k: int) -> float:
    _check(relevant_ids, k)
    seen: set = set()
    dcg = 0.0
    for rank, item in enumerate(ranked_ids[:k], 1):
        if item in relevant_ids and item not in seen:  # a duplicate hit gains nothing twice
            dcg += 1.0 / math.log2(rank + 1)
            seen.add(item)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(set(relevant_ids))) + 1))
    return dcg / ideal
