"""Training data shared by every mode: (query, gold passage, answers) examples, split and fingerprinted.

Three sources, one per flag:

- ``--pairs FILE.jsonl``: ``{"query", "positive", "negative"?}`` lines (no answers: embeddings only);
- ``--qa FILE``: SQuAD v1.1 JSON or JSONL read by :func:`rag.qa.load_qa`. A question
  with a ``context`` uses it as its gold passage; one without (``corpora/vellmar-qa.jsonl``)
  takes it from ``--index``: the chunk of its ``source`` file that contains an answer,
  else the chunk of that file closest to the question. Unanswerable questions are skipped,
  unless ``--unanswerable`` keeps them (``Example.positive`` None) for a generator to learn to decline;
- ``--synthetic --index DIR``: questions written by the local generator (:mod:`rag.finetune.synthetic`).

The split is :func:`rag.qa.split` on the question text, the same call the eval
stage makes, so held-out questions are never trained on. With ``--folds K
--fold I`` fold I's questions are left out first (:func:`rag.qa.fold_split`)
and the split divides the other folds' into training and validation. With
``--split-by document`` both split by the question's document instead (the
eval's ``--split-by document`` makes the same call), and the corpus the
generator draws distractors and documents from leaves out every held-out
and validation document.

    >>> data = load_data(FinetuneConfig("embeddings", "/tmp/e", qa="corpora/vellmar-qa.jsonl", index="/tmp/i"))  # doctest: +SKIP
    >>> len(data.train), len(data.val), data.corpus[:1]                                                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace

import numpy as np

from rag.config import Config
from rag.embed import embed_texts, for_index, load_embedder
from rag.finetune.config import FinetuneConfig
from rag.finetune.examples import Example, load_pairs
from rag.finetune.synthetic import synthetic_pairs
from rag.index import Index
from rag.passage import Chunk, Passage
from rag.qa import GoldPassages, QAItem, document_of, fold_split, load_qa, split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Data:
    train: list[Example]
    val: list[Example]
    # To rank in evaluation and draw distractors and documents from: index chunks, then other positives.
    # Under --split-by document, none from the held-out or validation documents.
    corpus: list[Passage]
    origin: str  # where the examples came from, for run.json

    @property
    def fingerprint(self) -> str:
        """Short SHA-256 of everything the run sees, so two runs on the same data can be recognised."""
        payload = json.dumps([[asdict(x) for x in part] for part in (self.train, self.val, self.corpus)], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def examples_from_qa(items: list[QAItem], index: Index | None, config: Config, unanswerable: bool = False) -> list[Example]:
    """Answerable questions with their gold passage, then, with ``unanswerable``, the others (see the module docstring)."""
    answerable = [item for item in items if item.answers]
    if not answerable:
        raise ValueError("the QA file has no question with an answer to train on")
    missing = [item for item in answerable if item.context is None]
    if missing and index is None:
        raise ValueError(
            f"{len(missing)} questions have no context passage (e.g. {missing[0].question!r}); "
            "pass --index INDEX_DIR to take them from an index"
        )
    passages = _gold_chunks(missing, index, config) if missing else {}
    examples = []
    for item in answerable:
        if item.context is not None:  # the context is the document: Example.document_key falls back to it
            examples.append(Example(item.question, item.context, tuple(item.answers), source=item.source))
        elif (chunk := passages.get(item.question)) is not None:
            examples.append(Example(item.question, chunk.text, tuple(item.answers), source=chunk.source, page=chunk.page,
                                    document=document_of(item)))
    if not examples:
        raise ValueError("no question's source file is in the index; build the index from the QA set's corpus")
    if unanswerable:
        examples += [Example(item.question, None, document=document_of(item)) for item in items if not item.answers]
    return examples


def _gold_chunks(items: list[QAItem], index: Index, config: Config) -> dict[str, Chunk]:
    """question -> gold chunk: in the item's source file (and page), holding the most answers, else the closest."""
    chunks = index.chunks()
    finder = GoldPassages(chunks)
    gold, unmatched = {}, []
    for item in items:
        if not item.source:
            continue
        ids, containing = finder.find(item)
        if item.page is not None and not ids:  # nothing on that page: any chunk of the file
            ids, containing = finder.find(replace(item, page=None))
        if containing:
            gold[item.question] = chunks[containing[0]]
        elif ids:
            unmatched.append((item, ids))
    if unmatched:  # no chunk holds the answer verbatim: the chunk of that file closest to the question
        logger.info("%d of %d questions have no chunk holding an answer in their source file (yes/no or paraphrased "
                    "answers): the chunk closest to the question stands in", len(unmatched), len(items))
        embedder = load_embedder(for_index(index.manifest, config))
        questions = embed_texts(embedder, [item.question for item, _ in unmatched], config.embed_batch_size)
        vectors = index.embeddings()
        for (item, ids), question in zip(unmatched, questions):
            scores = vectors[ids] @ question  # (len(ids), dim) @ (dim,) -> (len(ids),)
            gold[item.question] = chunks[ids[int(np.argmax(scores))]]
    return gold


def load_data(settings: FinetuneConfig, config: Config = Config()) -> Data:
    """Examples from the one data flag given, split by question and cut to ``--limit``."""
    given = [name for name in ("pairs", "qa", "synthetic") if getattr(settings, name)]
    if len(given) > 1:
        raise ValueError(f"give one data source, not {' and '.join('--' + g for g in given)}")
    index = Index.open(settings.index) if settings.index else None
    if not given:
        if settings.mode != "embeddings" and settings.objective == "unsupervised" and index is not None:
            examples, origin = [], f"index {settings.index}"  # continued training needs only the corpus
        else:
            raise ValueError("no training data: pass --pairs FILE.jsonl, --qa FILE or --synthetic --index INDEX_DIR")
    elif settings.pairs:
        examples, origin = load_pairs(settings.pairs), f"pairs {settings.pairs}"
    elif settings.qa:
        examples, origin = examples_from_qa(load_qa(settings.qa), index, config, settings.unanswerable), f"qa {settings.qa}"
    else:
        if index is None:
            raise ValueError("--synthetic writes questions for an index's chunks: pass --index INDEX_DIR")
        examples, origin = synthetic_pairs(index, settings, config), f"synthetic from {settings.index}"
    key = (lambda e: e.document_key) if settings.split_by == "document" else (lambda e: e.query)
    held_out: list[Example] = []
    if settings.folds is not None:  # fold I is the eval's alone: neither trained nor validated on
        examples, held_out = fold_split(examples, settings.folds, settings.fold, settings.seed, key=key)
    train, val = split(examples, settings.val_fraction, settings.seed, key=key)
    unseen = held_out + val  # under --split-by document, no training text may come from their documents
    train, val = settings.limited(train, val)
    if examples and not (train and val):
        raise ValueError(
            f"{len(examples)} examples give {len(train)} for training and {len(val)} for validation; "
            "use more data or change --val-fraction"
        )
    passages = [Passage(c.text, c.source, c.page) for c in index.chunks()] if index else []
    passages += [Passage(e.positive, e.source, e.page) for e in examples if not e.unanswerable]
    if settings.split_by == "document":
        passages = _outside_documents(passages, unseen)
    unique: dict[str, Passage] = {}
    for passage in passages:
        unique.setdefault(passage.text, passage)
    return Data(train, val, list(unique.values()), origin)


def _outside_documents(passages: list[Passage], examples: list[Example]) -> list[Passage]:
    """The passages that are neither one of the examples' gold passages nor a chunk of one of their source files."""
    positives = {e.positive for e in examples}
    sources = {e.document for e in examples if e.document}  # relative paths, matched as GoldPassages matches them
    return [
        p for p in passages
        if p.text not in positives and not (p.source and any(p.source == s or p.source.endswith("/" + s) for s in sources))
    ]
