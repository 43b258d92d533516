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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rag.config import CLOSED_BOOK
from rag.embed import for_index, load_embedder
from rag.eval.artifacts import Artifact, artifact_flag, given_folders
from rag.eval.charts import write_charts
from rag.eval.config import ARTIFACT_FIELDS, FOLD_PLACEHOLDER, EvalConfig
from rag.eval.dataset import Question, gold_chunk_ids, select, split_key, write_qa_corpus
from rag.eval.metrics import abstained, exact_match, groundedness, token_f1
from rag.eval.plan import plan, ranking_only
from rag.eval.predictions import Prediction, PredictionLog
from rag.eval.throughput import ModelCost, load_measured
from rag.eval.report import Ranking, Report, build_report, write_report
from rag.eval.variants import NO_RETRIEVAL, GeneratorSpec, RetrieverSpec
from rag.generate import Generation, Generator
from rag.index import Index
from rag.ingest import ingest  # the eval is an entry point: it builds the indexes it scores
from rag.language import resolve_language
from rag.prompt import Prompt, answer_text, build_prompt, load_few_shot
from rag.qa import document_of, fold_split, load_qa, question_fingerprint
from rag.retrieve import Retrieved, Retriever
from rag.runtime import atomic_write_text, peak_gpu_mb, peak_rss_mb, reset_gpu_peak

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class RetrievalRun:
    """One retriever's results for all questions, reused by every generator."""

    hits: dict[str, list[Retrieved]]  # qid -> chunks, best first; none closed book
    relevant: dict[str, list[int]]  # qid -> gold chunk ids in the searched index
    seconds_per_question: float


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class Part:
    """What one set of artifacts scores: every question, or (``--folds``) one fold's questions and probes."""

    fold: int | None
    retrievers: list[RetrieverSpec]
    generators: list[GeneratorSpec]
    questions: list[Question]
    probes: list[Question]
    indexes: dict[bool, Index]
    ranking_only: list[RetrieverSpec]  # scored on their ranking alone

    @property
    def artifacts(self) -> list[Artifact]:
        return [spec.artifact for spec in [*self.retrievers, *self.ranking_only, *self.generators] if spec.artifact]

    @property
    def ranking(self) -> list[RetrieverSpec]:
        """Every retriever whose ranking is scored: the ranking ones crossed with generators, then the ranking-only ones."""
        return [spec for spec in self.retrievers if spec.ranked] + self.ranking_only

    @property
    def label(self) -> str:
        return "" if self.fold is None else f" (fold {self.fold})"


def content_fingerprints(settings: EvalConfig, indexes: dict[bool, Index], artifacts: list[Artifact], label: str = "") -> dict[str, str]:
    """What the answers in predictions.jsonl depend on, by content rather than by path.

    Question ids are line numbers of the QA file, so an edited file must not
    reuse old answers; an index re-ingested or an artifact retrained in place
    changes what the same paths mean. ``label`` names a fold's fine-tuned index and artifacts.
    """
    prints = {
        "QA file": _sha256(Path(settings.qa).read_bytes()),
        "pipeline config": _sha256(json.dumps(settings.rag.to_dict(), sort_keys=True).encode()),
        "k": str(settings.k),
    }
    if settings.probe:
        prints["probe file"] = _sha256(Path(settings.probe).read_bytes())
    for fine_tuned, index in indexes.items():
        prints["fine-tuned index" + label if fine_tuned else "index"] = f"{index.folder.name} {index.manifest.updated}"
    for artifact in artifacts:
        prints[f"{artifact.flag} artifact{label}"] = artifact.fingerprint
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


def check_leakage(artifacts: list[Artifact], questions: list[Question], settings: EvalConfig, fold: int | None = None) -> list[str]:
    """Refuse an artifact trained on a question it would score (under ``--split-by document``, on a question's
    document); notes on the artifacts that cannot be checked.

    ``questions`` are those the artifacts score: all of this run's, or under ``--folds`` fold ``fold``'s.
    """
    scored = {"questions": {question_fingerprint(q.item.question) for q in questions}}
    if settings.split_by == "document":
        scored["documents"] = {question_fingerprint(document_of(q.item)) for q in questions}
    notes = []
    for artifact in artifacts:
        trained = {"questions": artifact.train_questions, "documents": artifact.train_documents}
        for unit, fingerprints in scored.items():
            if trained[unit] is None:
                notes.append(f"{artifact.flag} {artifact.path}: its run.json lists no training {unit}, so it was not "
                             f"checked for leakage of {unit} (train it again with python -m rag.finetune to record them)")
                continue
            overlap = fingerprints.intersection(trained[unit])
            if not overlap:
                continue
            trained_on = f"{artifact.flag} {artifact.path}: trained on {len(overlap)} of the {len(fingerprints)} {unit}"
            split_by = f" --split-by {settings.split_by}" if settings.split_by != "question" else ""
            if fold is not None:
                raise ValueError(
                    f"{trained_on} of fold {fold} it would score (it split with {artifact.describe_split()}; this eval: "
                    f"folds {settings.folds}, split_seed {settings.split_seed}, split by {settings.split_by}); train it "
                    f"with python -m rag.finetune --folds {settings.folds} --fold {fold} --seed {settings.split_seed}{split_by}"
                )
            raise ValueError(
                f"{trained_on} this eval scores (it split with {artifact.describe_split()}; this eval: split {settings.split}, "
                f"split_seed {settings.split_seed}, val_fraction {settings.val_fraction}, split by {settings.split_by}); score "
                f"the questions it held out with --split val --split-seed {artifact.seed} --val-fraction "
                f"{artifact.val_fraction} --split-by {artifact.split_by}"
            )
    return notes


def open_indexes(settings: EvalConfig, retrievers: list[RetrieverSpec], out: Path, fold: int | None = None) -> dict[bool, Index]:
    """{fine_tuned_index: Index} for the indexes the retrievers search, ingesting them as needed (one fine-tuned per fold)."""
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
        folder = out / ("index-ft" if fold is None else f"index-ft-fold-{fold}")
        ingest(corpus, folder, settings.rag.override({"embedder": settings.embedder}), show_progress=True)
        indexes[True] = Index.open(folder)
    return indexes


def retrieve_all(spec: RetrieverSpec, indexes: dict[bool, Index], questions: list[Question], settings: EvalConfig) -> RetrievalRun:
    if spec.method == CLOSED_BOOK:
        return RetrievalRun({q.qid: [] for q in questions}, {}, 0.0)
    index = indexes[spec.fine_tuned_index]
    # Loaded before the clock starts, so that its load time does not count as query latency.
    embedder = load_embedder(for_index(index.manifest, settings.rag)) if spec.method in ("dense", "hybrid") else None
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
    fold: int | None = None,
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
        # The ranking up to the eval k; the whole corpus ranks nothing: what its prompt holds.
        retrieved=[hit.chunk_id for hit in (hits if retriever.ranked else hits[: len(prompt.passages)])],
        prompt_passages=len(prompt.passages),
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
        fold=fold,
        peak_gpu_mb=None if (gpu_mb := peak_gpu_mb()) is None else round(gpu_mb, 1),
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
    fold: int | None = None,
) -> None:
    """Generate, score and log the answers of one combination (by ``fold``'s artifacts, under --folds), batch by batch.

    ``embedder`` scores sentences for a variant with ``context = "sentences"``.
    """
    name = f"{retriever.name}+{spec.name}" + (" (probe)" if suite == "probe" else "")
    reset_gpu_peak()  # this combination's peak, not an earlier one's
    began = time.perf_counter()
    config = spec.config.override({"retriever": retriever.method})
    examples = load_few_shot(config) if config.few_shot_file else None  # None: built-in ones in each question's language
    prompts = [
        build_prompt(q.item.question, [hit.chunk for hit in run.hits[q.qid][: config.k if retriever.ranked else None]],
                     generator.tokenizer, config, examples, embedder=embedder)
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
                score(suite, retriever, spec, questions[i], run, prompts[i], g, generator.virtual_tokens, overhead, fold)
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


def settings_per_fold(settings: EvalConfig) -> list[tuple[int | None, EvalConfig]]:
    """[(None, settings)], or under ``--folds K`` each fold with its artifact paths (see :meth:`EvalConfig.for_fold`)."""
    check_fold_paths(settings)
    if settings.folds is None:
        return [(None, settings)]
    if settings.split != "all":
        raise ValueError(f"--folds scores every question once, each with the artifacts that never saw it: drop --split {settings.split}")
    return [(fold, settings.for_fold(fold)) for fold in range(settings.folds)]


def check_fold_paths(settings: EvalConfig) -> None:
    """Under ``--folds`` every artifact path names its fold; without, none does."""
    for name in ARTIFACT_FIELDS:
        for path in given_folders(settings, name):
            if (FOLD_PLACEHOLDER in path) != (settings.folds is not None):
                flag = artifact_flag(name)
                if settings.folds is None:
                    raise ValueError(f"{flag} {path}: a {FOLD_PLACEHOLDER} path is for cross-validation; give --folds K")
                raise ValueError(f"{flag} {path}: with --folds each fold has its own artifact; give a path with "
                                 f"{FOLD_PLACEHOLDER}, e.g. runs/fold-{FOLD_PLACEHOLDER}/{Path(path).name}")


def rank_all(parts: list[Part], search: Callable[[Part, RetrieverSpec], RetrievalRun], k: int) -> list[Ranking]:
    """Every ranking retriever's results for every question up to ``k``, each fold's by that fold's index (``search``:
    the run's searches, made once for the answers and the rankings; cheap, so rerun rather than resumed)."""
    rankings: dict[str, Ranking] = {}
    for part in parts:
        for spec in part.ranking:
            run = search(part, spec)
            ranked = {qid: [hit.chunk_id for hit in hits[:k]] for qid, hits in run.hits.items()}
            found = Ranking(spec.name, spec not in part.ranking_only, ranked, run.relevant, run.seconds_per_question * len(part.questions))
            rankings[spec.name] = rankings[spec.name].merged(found) if spec.name in rankings else found
    return list(rankings.values())


def run_eval(settings: EvalConfig, *, progress: bool = True) -> Report:
    """Evaluate every planned combination (resuming from OUT/predictions.jsonl) and write the report."""
    began = time.perf_counter()
    out = Path(settings.out)
    plans = [(fold, fold_settings, plan(fold_settings)) for fold, fold_settings in settings_per_fold(settings)]
    retrievers, generators, skipped = plans[0][2]  # the variants' names are the same in every fold
    if not retrievers or not generators:
        raise ValueError("nothing to evaluate: " + "; ".join(f"{s.variant}: {s.reason}" for s in skipped))
    items = load_qa(settings.qa)
    out.mkdir(parents=True, exist_ok=True)
    if settings.corpus_from_qa:
        items = write_qa_corpus(items, out / "corpus")
    questions = select(items, settings.split, settings.limit, settings.seed, val_fraction=settings.val_fraction,
                       split_seed=settings.split_seed, split_by=settings.split_by)
    if not questions:
        raise ValueError(f"no question of {settings.qa} is in --split {settings.split}; use --split all")
    probing = settings.probe and any(g.fine_tuned for g in generators)
    probes = select(load_qa(settings.probe), limit=settings.limit, seed=settings.seed, prefix="p") if probing else []

    def in_fold(scored: list[Question], fold: int | None) -> list[Question]:  # as rag.finetune --folds --fold leaves out
        return scored if fold is None else fold_split(scored, settings.folds, fold, settings.split_seed, split_key(settings.split_by))[1]

    parts = []
    for fold, fold_settings, (fold_retrievers, fold_generators, _) in plans:
        fold_ranking_only = ranking_only(fold_settings, fold_retrievers)
        parts.append(Part(fold, fold_retrievers, fold_generators, in_fold(questions, fold), in_fold(probes, fold),
                          open_indexes(fold_settings, fold_retrievers + fold_ranking_only, out, fold), fold_ranking_only))
    notes = [note for part in parts for note in check_leakage(part.artifacts, part.questions, settings, part.fold)]
    fingerprints = {}
    for part in parts:
        fingerprints |= content_fingerprints(settings, part.indexes, part.artifacts, part.label)
    check_resumable(out, settings, fingerprints)
    log = PredictionLog(out / "predictions.jsonl")
    gold = gold_chunk_ids(parts[0].indexes[False], questions) if parts[0].indexes else None

    no_retrieval = retrieve_all(NO_RETRIEVAL, {}, probes, settings)
    costs = read_model_costs(out)
    loaded: Generator | None = None
    loaded_weights = None
    # The query embedder of the main index, to score sentences for the variants that keep only those.
    sentences = parts[0].indexes and any(spec.config.context == "sentences" for spec in generators)
    sentence_embedder = load_embedder(for_index(parts[0].indexes[False].manifest, settings.rag)) if sentences else None
    searches: dict[tuple[int | None, str], RetrievalRun] = {}

    def search(part: Part, retriever: RetrieverSpec) -> RetrievalRun:
        """``retriever``'s results for ``part``'s questions, searched once for every generator and the rankings."""
        if (part.fold, retriever.name) not in searches:
            searches[part.fold, retriever.name] = retrieve_all(retriever, part.indexes, part.questions, settings)
        return searches[part.fold, retriever.name]

    for part in parts:
        for spec in part.generators:
            retrievers_of_spec = [r for r in part.retrievers if spec.crosses(r)]
            pending = [(r, [q for q in part.questions if ("qa", f"{r.name}+{spec.name}", q.qid) not in log.done]) for r in retrievers_of_spec]
            if spec.fine_tuned or spec.name == spec.baseline:
                pending_probes = [q for q in part.probes if ("probe", f"{CLOSED_BOOK}+{spec.name}", q.qid) not in log.done]
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
                    answer_questions(log, "qa", retriever, spec, generator, todo, search(part, retriever), progress, sentence_embedder, part.fold)
            if pending_probes:
                answer_questions(log, "probe", NO_RETRIEVAL, spec, generator, pending_probes, no_retrieval, progress, fold=part.fold)

    report = build_report(
        log.predictions, settings, retrievers, generators,
        {q.qid for q in questions}, {q.qid for q in probes}, skipped, time.perf_counter() - began, gold, notes, costs,
        artifacts=[artifact for part in parts for artifact in part.artifacts], rankings=rank_all(parts, search, settings.k),
    )
    write_report(report, out)
    write_charts(report, out)
    return report

