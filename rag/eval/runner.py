"""run_eval: answer every question with every retriever x generator combination, then report.

The loop is generator-major: each generator's weights load once and answer the
prompts of every retriever (``base`` and ``fewshot`` share one model, they
differ only in the prompt); each retriever searches once for all questions.
Prompts are sorted by length and generated ``generation_batch_size`` at a
time, left-padded, and every finished batch is appended to predictions.jsonl,
so an interrupted run resumes where it stopped.

Forgetting: when a fine-tuned generator is evaluated, it and ``base`` also
answer the general-knowledge probe closed book (Ovadia et al., 2024, compare
knowledge injection by fine-tuning and by retrieval; a fine-tune that forgets
what the base model knew is a cost too).

    >>> from rag.eval import EvalConfig, run_eval
    >>> settings = EvalConfig("corpora/vellmar-qa.jsonl", "reports/vellmar", corpus=("corpora/vellmar",), limit=8)
    >>> report = run_eval(settings)                        # doctest: +SKIP
    >>> report.verdict.best, report.verdict.cheapest       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rag.config import CLOSED_BOOK
from rag.embed import for_index, load_embedder
from rag.eval.artifacts import Artifact
from rag.eval.charts import write_charts
from rag.eval.config import EvalConfig
from rag.eval.dataset import Question, gold_chunk_ids, select, write_qa_corpus
from rag.eval.metrics import abstained, exact_match, groundedness, token_f1
from rag.eval.plan import plan
from rag.eval.predictions import Prediction, PredictionLog
from rag.eval.throughput import ModelCost, load_measured
from rag.eval.report import Report, build_report, write_report
from rag.eval.variants import NO_RETRIEVAL, GeneratorSpec, RetrieverSpec
from rag.generate import Generation, Generator
from rag.index import Index
from rag.ingest import ingest  # the eval is an entry point: it builds the indexes it scores
from rag.language import resolve_language
from rag.prompt import Prompt, answer_text, build_prompt, load_few_shot
from rag.qa import load_qa, question_fingerprint
from rag.retrieve import Retrieved, Retriever
from rag.runtime import atomic_write_text, peak_rss_mb

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class RetrievalRun:
    """One retriever's results for all questions, reused by every generator."""

    hits: dict[str, list[Retrieved]]  # qid -> chunks, best first; none closed book
    relevant: dict[str, list[int]]  # qid -> gold chunk ids in the searched index
    seconds_per_question: float


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def content_fingerprints(settings: EvalConfig, indexes: dict[bool, Index], artifacts: list[Artifact]) -> dict[str, str]:
    """What the answers in predictions.jsonl depend on, by content rather than by path.

    Question ids are line numbers of the QA file, so an edited file must not
    reuse old answers; an index re-ingested or an artifact retrained in place
    changes what the same paths mean.
    """
    prints = {
        "QA file": _sha256(Path(settings.qa).read_bytes()),
        "pipeline config": _sha256(json.dumps(settings.rag.to_dict(), sort_keys=True).encode()),
        "k": str(settings.k),
    }
    if settings.probe:
        prints["probe file"] = _sha256(Path(settings.probe).read_bytes())
    for fine_tuned, index in indexes.items():
        prints["fine-tuned index" if fine_tuned else "index"] = f"{index.folder.name} {index.manifest.updated}"
    for artifact in artifacts:
        prints[f"{artifact.flag} artifact"] = artifact.fingerprint
    return prints


def check_resumable(out: Path, settings: EvalConfig, fingerprints: dict[str, str]) -> None:
    """Refuse to mix answers made from other content into one report; remember what these are made from."""
    path = out / "settings.json"
    saved = json.loads(path.read_text(encoding="utf-8")).get("fingerprints") if path.is_file() else None
    if (out / "predictions.jsonl").is_file() and saved is not None:
        changed = [name for name, value in fingerprints.items() if name in saved and saved[name] != value]
        if changed:
            raise ValueError(
                f"{out} holds predictions made with other {', '.join(changed)} (changed since they were written); "
                f"use another --out, or delete {out / 'predictions.jsonl'} to start over"
            )
    elif (out / "predictions.jsonl").is_file():
        raise ValueError(f"{out}/predictions.jsonl was written by an older rag.eval that recorded no fingerprints; "
                         "use another --out, or delete it to start over")
    # A variant left out this time still names what the lines already written were made with.
    kept = {name: value for name, value in (saved or {}).items() if name not in fingerprints}
    record = {"settings": settings.to_dict(), "fingerprints": fingerprints | kept}
    atomic_write_text(path, json.dumps(record, indent=2))


def check_leakage(artifacts: list[Artifact], questions: list[Question], settings: EvalConfig) -> list[str]:
    """Refuse an artifact trained on a question this run scores; notes on the artifacts that cannot be checked."""
    scored = {question_fingerprint(q.item.question) for q in questions}
    notes = []
    for artifact in artifacts:
        if artifact.train_questions is None:
            notes.append(f"{artifact.flag} {artifact.path}: its run.json lists no training questions, so it was not "
                         "checked for leakage (train it with python -m rag.finetune to record them)")
            continue
        overlap = scored.intersection(artifact.train_questions)
        if overlap:
            raise ValueError(
                f"{artifact.flag} {artifact.path}: trained on {len(overlap)} of the {len(scored)} questions this eval "
                f"scores (it split with {artifact.describe_split()}; this eval: split {settings.split}, split_seed "
                f"{settings.split_seed}, val_fraction {settings.val_fraction}); score the questions it held out with "
                f"--split val --split-seed {artifact.seed} --val-fraction {artifact.val_fraction}"
            )
    return notes


def open_indexes(settings: EvalConfig, retrievers: list[RetrieverSpec], out: Path) -> dict[bool, Index]:
    """{fine_tuned_index: Index} for the indexes the retrievers search, ingesting them as needed."""
    needed = {spec.fine_tuned_index for spec in retrievers if spec.method != CLOSED_BOOK}
    if not needed:
        return {}
    if settings.index:
        main = Path(settings.index)
        corpus = list(Index.open(main).files())  # the index's own files, for the fine-tuned copy
    else:
        main = out / "index"
        corpus = [out / "corpus"] if settings.corpus_from_qa else list(settings.corpus)
        ingest(corpus, main, settings.rag, show_progress=True)  # incremental: a no-op on resume
    indexes = {False: Index.open(main)}
    if True in needed:
        # The fine-tuned embedder puts chunks in another vector space: it needs its own index.
        ingest(corpus, out / "index-ft", settings.rag.override({"embedder": settings.embedder}), show_progress=True)
        indexes[True] = Index.open(out / "index-ft")
    return indexes


def retrieve_all(spec: RetrieverSpec, indexes: dict[bool, Index], questions: list[Question], settings: EvalConfig) -> RetrievalRun:
    if spec.method == CLOSED_BOOK:
        return RetrievalRun({q.qid: [] for q in questions}, {}, 0.0)
    index = indexes[spec.fine_tuned_index]
    # Loaded before the clock starts, so that its load time does not count as query latency.
    embedder = None if spec.method == "bm25" else load_embedder(for_index(index.manifest, settings.rag))
    retriever = Retriever(index, settings.rag, embedder=embedder)
    began = time.perf_counter()
    # Deep enough for the retrieval metrics (eval k) and for the prompt (rag config k).
    results = retriever.search([q.item.question for q in questions], spec.method, k=max(settings.k, settings.rag.k))
    seconds = (time.perf_counter() - began) / len(questions)
    return RetrievalRun(dict(zip((q.qid for q in questions), results)), gold_chunk_ids(index, questions).relevant, seconds)


def score(
    suite: str,
    retriever: RetrieverSpec,
    generator: GeneratorSpec,
    question: Question,
    run: RetrievalRun,
    prompt: Prompt,
    generation: Generation,
    virtual_tokens: int,
    overhead_s: float,
) -> Prediction:
    answer = answer_text(generation.text)
    golds = question.item.answers
    language_code = resolve_language(generator.config.language, question.item.question)  # normalization's articles
    declined = abstained(answer)
    hits = run.hits[question.qid]
    return Prediction(
        suite=suite,
        combination=f"{retriever.name}+{generator.name}",
        retriever=retriever.name,
        generator=generator.name,
        qid=question.qid,
        question=question.item.question,
        answers=golds,
        generated=generation.text,
        answer=answer,
        retrieved=[hit.chunk_id for hit in hits],
        relevant=run.relevant.get(question.qid, []),
        prompt_tokens=len(prompt.input_ids) + virtual_tokens,
        latency_s=round(overhead_s + generation.seconds, 4),
        peak_rss_mb=round(peak_rss_mb(), 1),
        exact_match=exact_match(answer, golds, language_code) if golds else None,
        f1=token_f1(answer, golds, language_code) if golds else None,
        # "I don't know" makes no claim, so it is neither grounded nor ungrounded.
        groundedness=None if declined else groundedness(answer, [passage.text for passage in prompt.passages], language_code),
        abstained=declined,
        kind=question.item.kind,
    )


def answer_questions(
    log: PredictionLog,
    suite: str,
    retriever: RetrieverSpec,
    spec: GeneratorSpec,
    generator: Generator,
    questions: list[Question],
    run: RetrievalRun,
    progress: bool,
    embedder=None,
) -> None:
    """Generate, score and log the answers of one combination, batch by batch.

    ``embedder`` scores sentences for a variant with ``context = "sentences"``.
    """
    name = f"{retriever.name}+{spec.name}" + (" (probe)" if suite == "probe" else "")
    began = time.perf_counter()
    config = spec.config.override({"retriever": retriever.method})
    examples = load_few_shot(config) if config.few_shot_file else None  # None: built-in ones in each question's language
    prompts = [
        build_prompt(q.item.question, [hit.chunk for hit in run.hits[q.qid][: config.k]], generator.tokenizer, config, examples, embedder=embedder)
        for q in questions
    ]
    overhead = run.seconds_per_question + (time.perf_counter() - began) / len(questions)
    # Similar lengths in one batch: every pad token of a left-padded batch costs as much as a real one.
    order = sorted(range(len(questions)), key=lambda i: len(prompts[i].input_ids))
    size = spec.config.generation_batch_size
    with tqdm(total=len(questions), desc=name, unit="q", disable=not progress) as bar:
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            generations = generator.generate([prompts[i].input_ids for i in batch])
            log.append([
                score(suite, retriever, spec, questions[i], run, prompts[i], g, generator.virtual_tokens, overhead)
                for i, g in zip(batch, generations)
            ])
            bar.update(len(batch))
    elapsed = time.perf_counter() - began
    logger.info("%s: %d questions in %.1f s, %.2f questions/s", name, len(questions), elapsed, len(questions) / elapsed)


def read_model_costs(out: Path) -> dict[str, ModelCost]:
    """The generator models' costs measured by earlier runs into ``out`` (a resumed run may load no model)."""
    path = out / "models.json"
    rows = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    return {row["model"]: ModelCost(**row) for row in rows}


def write_model_costs(out: Path, costs: dict[str, ModelCost]) -> None:
    atomic_write_text(out / "models.json", json.dumps([asdict(cost) for cost in costs.values()], indent=2))


def run_eval(settings: EvalConfig, *, progress: bool = True) -> Report:
    """Evaluate every planned combination (resuming from OUT/predictions.jsonl) and write the report."""
    began = time.perf_counter()
    out = Path(settings.out)
    retrievers, generators, skipped = plan(settings)
    if not retrievers or not generators:
        raise ValueError("nothing to evaluate: " + "; ".join(f"{s.variant}: {s.reason}" for s in skipped))
    items = load_qa(settings.qa)
    out.mkdir(parents=True, exist_ok=True)
    if settings.corpus_from_qa:
        items = write_qa_corpus(items, out / "corpus")
    questions = select(items, settings.split, settings.limit, settings.seed, val_fraction=settings.val_fraction,
                       split_seed=settings.split_seed)
    if not questions:
        raise ValueError(f"no question of {settings.qa} is in --split {settings.split}; use --split all")
    artifacts = [spec.artifact for spec in [*retrievers, *generators] if spec.artifact]
    notes = check_leakage(artifacts, questions, settings)
    probing = settings.probe and any(g.fine_tuned for g in generators)
    probes = select(load_qa(settings.probe), limit=settings.limit, seed=settings.seed, prefix="p") if probing else []
    indexes = open_indexes(settings, retrievers, out)
    check_resumable(out, settings, content_fingerprints(settings, indexes, artifacts))
    log = PredictionLog(out / "predictions.jsonl")
    gold = gold_chunk_ids(indexes[False], questions) if indexes else None

    retrieval: dict[str, RetrievalRun] = {}
    no_retrieval = retrieve_all(NO_RETRIEVAL, {}, probes, settings)
    costs = read_model_costs(out)
    loaded: Generator | None = None
    loaded_weights = None
    # The query embedder of the main index, to score sentences for the variants that keep only those.
    sentences = indexes and any(spec.config.context == "sentences" for spec in generators)
    sentence_embedder = load_embedder(for_index(indexes[False].manifest, settings.rag)) if sentences else None
    for spec in generators:
        pending = [(r, [q for q in questions if ("qa", f"{r.name}+{spec.name}", q.qid) not in log.done]) for r in retrievers]
        if spec.fine_tuned or spec.name == spec.baseline:
            pending_probes = [q for q in probes if ("probe", f"{CLOSED_BOOK}+{spec.name}", q.qid) not in log.done]
        else:
            pending_probes = []
        if not pending_probes and not any(todo for _, todo in pending):
            continue
        if loaded is None or loaded_weights != spec.weights:
            loaded, cost = load_measured(spec.config, adapter=spec.adapter)
            loaded_weights = spec.weights
            if spec.adapter is None:  # the model alone: an adapter's load time is not the model's
                costs[cost.model] = cost
                write_model_costs(out, costs)
        generator = Generator(loaded.model, loaded.tokenizer, spec.config)  # same weights, this variant's prompt config
        for retriever, todo in pending:
            if todo:
                if retriever.name not in retrieval:
                    retrieval[retriever.name] = retrieve_all(retriever, indexes, questions, settings)
                answer_questions(log, "qa", retriever, spec, generator, todo, retrieval[retriever.name], progress, sentence_embedder)
        if pending_probes:
            answer_questions(log, "probe", NO_RETRIEVAL, spec, generator, pending_probes, no_retrieval, progress)

    report = build_report(
        log.predictions, settings, retrievers, generators,
        {q.qid for q in questions}, {q.qid for q in probes}, skipped, time.perf_counter() - began, gold, notes, costs,
    )
    write_report(report, out)
    write_charts(report, out)
    return report
