"""Embeddings mode: fine-tune the retriever's encoder on (query, passage) pairs.

The loss is sentence-transformers' ``MultipleNegativesRankingLoss`` (Henderson
et al. 2017, "Efficient natural language response suggestion for Smart Reply"):
for a batch of B pairs, each query's own passage is the positive and the other
B - 1 passages (plus any hard negatives) are negatives, a cross-entropy over
scaled cosine similarities. A batch therefore never holds the same passage
twice, or a pair would be pushed away from its own positive.

``--hard-negatives`` adds, per pair, the corpus passage the base encoder ranks
highest that is not the positive and holds no answer string. Recall@1/5/10,
MRR@10 and nDCG@10 on the validation questions, ranked against the whole
corpus (index chunks and every positive), are measured before and after. With
``--limit N`` the ranking corpus is the examples' own positives plus a seeded
sample of at most 4N (at least 16) other passages, so that a short run's
evaluation, like its training, costs in proportion to N and not to the corpus.

    >>> task = build(settings, config, data)   # doctest: +SKIP
    >>> task.evaluate()["recall@5"]            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from rag.config import Config
from rag.finetune.config import FinetuneConfig
from rag.embed import embed_texts, load_embedder
from rag.finetune.data import Data
from rag.finetune.examples import Example
from rag.finetune.trainer import Task
from rag.metrics import mrr_at_k, ndcg_at_k, recall_at_k

CUTOFFS = (1, 5, 10)
OTHERS_PER_LIMIT, MIN_OTHERS = 4, 16  # passages ranked besides the positives when --limit is given


def no_duplicate_batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches in which no query or passage text appears twice (a false in-batch negative)."""
    remaining = list(range(len(examples)))
    rng.shuffle(remaining)
    batches = []
    while remaining:
        batch, seen, rest = [], set(), []
        for i in remaining:
            texts = {examples[i].query, examples[i].positive}
            if len(batch) < size and not texts & seen:
                batch.append(examples[i])
                seen |= texts
            else:
                rest.append(i)
        batches.append(batch)
        remaining = rest
    # A batch of one has no in-batch negative: its loss is 0 and it teaches nothing.
    return [batch for batch in batches if len(batch) > 1]


def rank(model, queries: list[str], corpus_vectors: np.ndarray, batch_size: int, depth: int) -> np.ndarray:
    """Corpus row numbers, best first, (len(queries), depth)."""
    scores = embed_texts(model, queries, batch_size) @ corpus_vectors.T  # (n_queries, dim) @ (dim, n_corpus)
    return np.argsort(-scores, axis=1)[:, :depth]


def retrieval_metrics(model, examples: list[Example], corpus: list[str], batch_size: int) -> dict[str, float]:
    """Mean recall@1/5/10, MRR@10 and nDCG@10 of the examples' queries over ``corpus``."""
    row_of = {text: row for row, text in enumerate(corpus)}
    rankings = rank(model, [e.query for e in examples], embed_texts(model, corpus, batch_size), batch_size, max(CUTOFFS))
    relevant = [{row_of[e.positive]} for e in examples]
    metrics = {f"recall@{k}": np.mean([recall_at_k(r, g, k) for r, g in zip(rankings, relevant)]) for k in CUTOFFS}
    metrics["mrr@10"] = np.mean([mrr_at_k(r, g, 10) for r, g in zip(rankings, relevant)])
    metrics["ndcg@10"] = np.mean([ndcg_at_k(r, g, 10) for r, g in zip(rankings, relevant)])
    return {name: round(float(value), 4) for name, value in metrics.items()}


def ranking_corpus(examples: list[Example], corpus: list[str], limit: int | None, seed: int) -> list[str]:
    """``corpus``; with ``limit``, the examples' positives plus a seeded sample of other passages (module docstring)."""
    if not limit:  # the positives are missing from the corpus only under --split-by document
        known = set(corpus)
        return corpus + list(dict.fromkeys(e.positive for e in examples if e.positive not in known))
    positives = dict.fromkeys(e.positive for e in examples)  # ordered set
    others = [text for text in corpus if text not in positives]
    return list(positives) + random.Random(seed).sample(others, min(len(others), max(MIN_OTHERS, OTHERS_PER_LIMIT * limit)))


def mine_hard_negatives(model, examples: list[Example], corpus: list[str], batch_size: int) -> list[Example]:
    """Each example with the highest-ranked corpus passage that is neither its positive nor holds an answer."""
    rankings = rank(model, [e.query for e in examples], embed_texts(model, corpus, batch_size), batch_size, 20)
    mined = []
    for example, ranking in zip(examples, rankings):
        candidates = (corpus[row] for row in ranking if example.distracts(corpus[row]))
        mined.append(dataclasses.replace(example, negative=example.negative or next(candidates, None)))
    return mined


def build(settings: FinetuneConfig, config: Config, data: Data) -> Task:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = load_embedder(config, for_training=True)  # fp32: bf16 weights would swallow 2e-5 updates
    loss_fn = MultipleNegativesRankingLoss(model)
    corpus = [passage.text for passage in data.corpus]
    train = data.train
    if settings.hard_negatives:
        train = mine_hard_negatives(model, train, ranking_corpus(train, corpus, settings.limit, settings.seed), config.embed_batch_size)
    val_corpus = ranking_corpus(data.val, corpus, settings.limit, settings.seed)

    def loss(batch: list[Example]):
        columns = [[e.query for e in batch], [e.positive for e in batch]]
        if all(e.negative for e in batch):  # negatives are a third column, one per row or none at all
            columns.append([e.negative for e in batch])
        # preprocess also returns non-tensor entries (the input "modality"); only tensors move to the device.
        features = [{k: v.to(model.device) if torch.is_tensor(v) else v for k, v in model.preprocess(texts).items()} for texts in columns]
        tokens = sum(int(f["attention_mask"].sum()) for f in features)
        return loss_fn(features, labels=None), tokens

    def save(folder: Path) -> None:
        model.save(str(folder))

    return Task(
        model=model,
        train=train,
        val=data.val,
        loss=loss,
        save=save,
        evaluate=lambda: retrieval_metrics(model, data.val, val_corpus, config.embed_batch_size),
        batches=no_duplicate_batches,
    )
