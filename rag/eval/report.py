"""The "RAG or fine-tune?" report: scores per combination, forgetting, verdict; report.md and report.json.

Everything is computed from predictions.jsonl, so a resumed run reports on all
its answers. The verdict names the combination with the best mean F1 and the
cheapest combination within noise of it; on a small sample a difference can be
noise, and a cheaper setup that may be as good is the practical answer (Ovadia
et al., 2024, "Fine-tuning or retrieval?"; Zhang et al., 2024, RAFT).

Comparisons change one factor at a time: the retrieval effect is each
retriever against closed book *with the same generator*, the fine-tuning effect
each fine-tuned generator against ``base`` *with the same retriever*, and the
fine-tuning methods against each other: generators fine-tuned from the same
model for the same test (with passages, or closed book), within each retriever
("method": LoRA, soft prompt, full, from scratch); with a
generator trained to answer closed book (``lora-cb``, ``full-cb``), the arms of
"RAG or fine-tune?" are compared too: each retriever with ``base`` against it,
closed book ("rag-vs-fine-tune"); a prompt change of the same weights (``fewshot``,
``sentences``) is compared with ``base`` within each retriever ("prompting", "context"). Each has
its paired bootstrap 95% interval of the per-question F1 difference and a
paired randomization test; "clearly" means the Holm-adjusted p-value over all
the verdict's comparisons is below 5% (Holm, 1979), so that testing many
pairs, or picking the best of a group, does not manufacture a clear winner.
"Within noise of the best" uses the same test, Holm-adjusted over the
comparisons with the best. Forgetting uses the same paired intervals.

Cost order (:data:`COST_ORDER`): fewer trainable parameters first (a
combination that needs no training beats one that does), then lower latency
p50, then fewer prompt tokens.

    >>> report = build_report(log.predictions, settings, retrievers, generators, qids, probe_ids, skipped, 12.0)  # doctest: +SKIP
    >>> write_report(report, Path("reports/vellmar"))                                           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from rag.config import CLOSED_BOOK, WHOLE_CORPUS
from rag.eval.artifacts import Artifact
from rag.eval.config import EvalConfig
from rag.eval.plan import Skipped
from rag.eval.variants import GeneratorSpec, RetrieverSpec
from rag.eval.dataset import GoldChunks
from rag.eval.metrics import Interval, bootstrap_ci, holm, paired_difference, paired_p_value
from rag.eval.predictions import Prediction
from rag.eval.throughput import ModelCost
from rag.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from rag.runtime import atomic_write_text

COST_ORDER = "fewest trainable parameters (no training first), then lowest latency p50, then fewest prompt tokens"
ALPHA = 0.05  # family-wise error rate of the verdict's "clearly"
RECALL_COLUMNS = (1, 5, 10)


@dataclass(frozen=True)
class CombinationScore:
    combination: str
    retriever: str
    generator: str
    questions: int
    answerable: int  # questions with a gold answer: those EM and F1 are averaged over
    exact_match: Interval | None
    f1: Interval | None
    recall: list[float] | None  # recall@1..k (index i is recall@(i+1)); None closed book
    mrr: float | None  # MRR@k
    ndcg: float | None  # nDCG@k
    retrieval_questions: int  # questions with gold chunks in the index
    gold_in_prompt: float | None  # share of them whose prompt holds a gold chunk (after packing); None closed book
    groundedness: float | None
    abstention: float | None  # share of unanswerable questions answered "I don't know"
    false_abstention: float | None  # share of answerable questions answered "I don't know"
    f1_by_kind: dict[str, float]  # mean F1 per question kind (name, number, date, yesno...) where the QA set marks kinds
    prompt_tokens: float
    latency_p50_s: float
    latency_p95_s: float
    questions_per_s: float
    peak_rss_mb: float  # process high-water mark (it includes the models loaded before)
    train_seconds: float | None  # from the artifacts' run.json; 0 without training, None if unknown
    trainable_params: int | None
    artifact_bytes: int
    model: str = ""  # the generator model (package:NAME or folder)
    model_params: int | None = None  # the generator model's parameters, None if not measured
    load_seconds: float | None = None  # loading it (from the cached float weights)
    decode_tokens_per_s: float | None = None  # its greedy decoding speed (rag.eval.throughput.decode_speed)
    peak_gpu_mb: float | None = None  # the GPU allocator's peak while it answered (models included); None without a GPU
    f1_by_fold: dict[int, float | None] = dataclasses.field(default_factory=dict)  # --folds: mean F1 of each fold's questions

    def cost(self) -> tuple[float, float, float]:
        """Sort key of :data:`COST_ORDER`."""
        trainable = math.inf if self.trainable_params is None else self.trainable_params
        return trainable, self.latency_p50_s, self.prompt_tokens


@dataclass(frozen=True)
class Ranking:
    """One retriever's rankings of the scored questions (pooled over the folds under ``--folds``)."""

    retriever: str
    answered: bool  # crossed with the generators; False: --ranking-only
    ranked: dict[str, list[int]]  # qid -> chunk ids, best first, up to the eval k
    relevant: dict[str, list[int]]  # qid -> gold chunk ids (questions without any are left out of the metrics)
    search_seconds: float  # searching them all

    def merged(self, other: Ranking) -> Ranking:
        """This ranking and another fold's, as one."""
        return dataclasses.replace(self, ranked=self.ranked | other.ranked, relevant=self.relevant | other.relevant,
                                   search_seconds=self.search_seconds + other.search_seconds)


@dataclass(frozen=True)
class RetrieverScore:
    """A retriever's ranking quality over every question with gold chunks, whether or not answers were made with it."""

    retriever: str
    answered: bool
    questions: int  # questions with gold chunks
    recall: list[float]  # recall@1..k
    mrr: Interval  # MRR@k with its bootstrap 95% interval
    ndcg: float  # nDCG@k
    search_ms: float  # per question


@dataclass(frozen=True)
class ProbeScore:
    """A generator's closed-book score on the general-knowledge probe (forgetting after fine-tuning)."""

    generator: str
    questions: int
    exact_match: Interval | None
    f1: Interval | None
    f1_change: Interval | None  # paired difference from the base model's F1; below 0: knowledge was forgotten


@dataclass(frozen=True)
class Comparison:
    """One factor changed, everything else the same: ``a`` against ``b`` on the questions both answered."""

    factor: str  # a key of FACTOR_LABELS: "retrieval" (a retriever vs closed book, same generator), "fine-tuning" (vs base, same retriever)...
    a: str
    b: str
    difference: Interval  # mean paired F1(a) - F1(b) (MRR for a retrieval comparison) and its bootstrap 95% interval
    p_value: float  # paired randomization test
    adjusted_p_value: float  # Holm-adjusted over every comparison of the verdict
    outcome: str  # "clearly beats" | "clearly loses to" | "within noise of"


@dataclass(frozen=True)
class Verdict:
    best: str | None
    cheapest: str | None  # cheapest combination within noise of the best one
    within_noise: list[str]  # the best, and those the Holm-adjusted test cannot tell from it
    comparisons: list[Comparison]
    cost_order: str
    summary: list[str]


@dataclass(frozen=True)
class Report:
    settings: EvalConfig
    questions: int
    combinations: list[CombinationScore]
    forgetting: list[ProbeScore]
    skipped: list[Skipped]
    artifacts: list[Artifact]
    verdict: Verdict
    wall_seconds: float  # this invocation only
    answer_seconds: float  # per-question latencies summed over every answer scored, resumed runs included
    gold: dict[str, int] | None  # answerable questions by how their gold chunks were found (None: no index)
    questions_by_kind: dict[str, int]  # answerable questions per kind
    notes: list[str]  # checks that could not be made, e.g. an artifact without a record of its training questions
    models: list[ModelCost] = dataclasses.field(default_factory=list)  # the generator models' costs
    retrieval: list[RetrieverScore] = dataclasses.field(default_factory=list)  # every ranking retriever, answered or not
    # One factor of retrieval at a time, on per-question MRR: the fine-tuned embedder against the one it started from.
    retrieval_comparisons: list[Comparison] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _training_cost(artifacts: list[Artifact], scored: list[Artifact]) -> tuple[float | None, int | None, int]:
    """(seconds, trainable parameters, bytes) of training ``artifacts``, each the mean of its copies among ``scored``:
    under ``--folds`` every fold trained its own, and one training costs their mean."""
    copies = [[c for c in scored if (c.flag, c.base_model) == (a.flag, a.base_model)] or [a] for a in artifacts]
    seconds = [c.wall_seconds for group in copies for c in group]
    params = [c.trainable_params for group in copies for c in group]
    return (
        None if None in seconds else float(sum(np.mean([c.wall_seconds for c in group]) for group in copies)),
        None if None in params else int(sum(group[0].trainable_params for group in copies)),
        int(sum(np.mean([c.artifact_bytes for c in group]) for group in copies)),
    )


def score_combination(
    predictions: list[Prediction], retriever: RetrieverSpec, generator: GeneratorSpec, settings: EvalConfig, model: ModelCost | None = None,
    artifacts: list[Artifact] | None = None,
) -> CombinationScore:
    """One combination's scores; ``artifacts``: every artifact scored (each fold's), for the training cost."""
    answerable = [p for p in predictions if p.answers]
    with_gold = [p for p in predictions if p.relevant]
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    ranked = retriever.ranked and with_gold
    latencies = [p.latency_s for p in predictions]
    trained = [a for a in (retriever.artifact, generator.artifact) if a]
    train_seconds, trainable, size = _training_cost(trained, trained if artifacts is None else artifacts)
    return CombinationScore(
        combination=f"{retriever.name}+{generator.name}",
        retriever=retriever.name,
        generator=generator.name,
        questions=len(predictions),
        answerable=len(answerable),
        exact_match=bootstrap_ci([p.exact_match for p in answerable], **resample),
        f1=bootstrap_ci([p.f1 for p in answerable], **resample),
        recall=[_mean([recall_at_k(p.retrieved, p.relevant, k) for p in with_gold]) for k in range(1, settings.k + 1)] if ranked else None,
        mrr=_mean([mrr_at_k(p.retrieved, p.relevant, settings.k) for p in with_gold]) if ranked else None,
        ndcg=_mean([ndcg_at_k(p.retrieved, p.relevant, settings.k) for p in with_gold]) if ranked else None,
        retrieval_questions=len(with_gold),
        gold_in_prompt=_mean([float(bool(set(p.retrieved[: p.prompt_passages]) & set(p.relevant))) for p in with_gold]),
        groundedness=_mean([p.groundedness for p in predictions if p.groundedness is not None]),
        abstention=_mean([float(p.abstained) for p in predictions if not p.answers]),
        false_abstention=_mean([float(p.abstained) for p in answerable]),
        f1_by_kind={kind: _mean([p.f1 for p in answerable if p.kind == kind]) for kind in sorted({p.kind for p in answerable if p.kind})},
        prompt_tokens=float(np.mean([p.prompt_tokens for p in predictions])),
        latency_p50_s=float(np.percentile(latencies, 50)),
        latency_p95_s=float(np.percentile(latencies, 95)),
        questions_per_s=len(latencies) / sum(latencies),
        peak_rss_mb=max(p.peak_rss_mb for p in predictions),
        train_seconds=train_seconds,
        trainable_params=trainable,
        artifact_bytes=size,
        model=generator.config.generator,
        model_params=model.parameters if model else None,
        load_seconds=model.load_seconds if model else None,
        decode_tokens_per_s=model.decode_tokens_per_s if model else None,
        peak_gpu_mb=max((p.peak_gpu_mb for p in predictions if p.peak_gpu_mb is not None), default=None),
        f1_by_fold={
            fold: _mean([p.f1 for p in answerable if p.fold == fold])
            for fold in range(settings.folds or 0)
        },
    )


PerQuestion = dict[str, dict[str, float]]  # name -> qid -> F1, the answerable questions only


def _per_question_f1(predictions: list[Prediction], key: Callable[[Prediction], str]) -> PerQuestion:
    scores: PerQuestion = {}
    for p in predictions:
        if p.answers:
            scores.setdefault(key(p), {})[p.qid] = p.f1
    return scores


def _outcome(difference: Interval, adjusted_p_value: float) -> str:
    if adjusted_p_value < ALPHA:
        return "clearly beats" if difference.mean > 0 else "clearly loses to"
    return "within noise of"


def retrieval_counterparts(generators: list[GeneratorSpec]) -> dict[str, list[str]]:
    """Each generator trained with the whole corpus in its prompt -> those fine-tuned by the same method (LoRA, full)
    from the same model to read retrieved passages: the arm it is compared with, each trained for its own test."""
    for_retrieval = [g for g in generators if g.fine_tuned and g.only_with is None]
    return {
        g.name: [h.name for h in for_retrieval if (h.artifact.mode, h.baseline) == (g.artifact.mode, g.baseline)]
        for g in generators if g.fine_tuned and g.only_with == WHOLE_CORPUS
    }


def one_factor_pairs(
    scores: list[CombinationScore], fine_tuned: dict[str, str], closed_book: frozenset[str] = frozenset(),
    prompt_variants: dict[str, tuple[str, str]] | None = None, corpus_counterparts: dict[str, list[str]] | None = None,
) -> list[tuple[str, str, str]]:
    """(factor, a, b): each retriever vs closed book per generator, then each fine-tuned generator vs base per retriever,
    then the fine-tuning methods against each other per retriever (each pair of generators fine-tuned from the same
    model for the same test: LoRA, soft prompt, full, from scratch), then retrieval with ``base`` vs each generator
    trained to answer closed book (the arms of "RAG or fine-tune?"),
    then the whole corpus in the prompt vs each ranking retriever per generator (the preprompt arm) and, for a
    generator trained with the whole corpus in its prompt, vs each ranking retriever with its counterpart trained for
    retrieval (each arm trained for its own test), then each untrained prompt variant vs ``base`` per retriever.

    ``fine_tuned`` maps each fine-tuned generator to its baseline, the ``base`` variant of the same model;
    ``closed_book`` names the generators trained with ``--objective closed-book``; ``prompt_variants`` maps each
    variant that changes only the prompt of the same weights to (its factor, its ``base``): ``fewshot`` is the
    "prompting" factor (prompt engineering against fine-tuning, the question of the user's document 001),
    ``sentences`` the "context" factor. ``corpus_counterparts`` maps each generator trained with
    ``--objective preprompt`` to the generators fine-tuned by the same method from the same model for retrieval.
    """
    names = {s.combination for s in scores if s.f1}
    retrievers = list(dict.fromkeys(s.retriever for s in scores))
    generators = list(dict.fromkeys(s.generator for s in scores))
    pairs = [
        ("retrieval", f"{r}+{g}", f"{CLOSED_BOOK}+{g}")
        for g in generators
        for r in retrievers
        if r != CLOSED_BOOK and {f"{r}+{g}", f"{CLOSED_BOOK}+{g}"} <= names
    ]
    trained = [g for g in generators if g in fine_tuned]
    pairs += [
        ("fine-tuning", f"{r}+{g}", f"{r}+{fine_tuned[g]}")
        for r in retrievers
        for g in trained
        if {f"{r}+{g}", f"{r}+{fine_tuned[g]}"} <= names
    ]
    pairs += [
        ("method", f"{r}+{a}", f"{r}+{b}")
        for r in retrievers
        for a, b in combinations(trained, 2)
        if fine_tuned[a] == fine_tuned[b] and {f"{r}+{a}", f"{r}+{b}"} <= names  # each is crossed only as it was trained
    ]
    pairs += [
        ("rag-vs-fine-tune", f"{r}+{fine_tuned[g]}", f"{CLOSED_BOOK}+{g}")
        for g in generators
        if g in closed_book
        for r in retrievers
        if r != CLOSED_BOOK and {f"{r}+{fine_tuned[g]}", f"{CLOSED_BOOK}+{g}"} <= names
    ]
    pairs += [
        ("corpus", f"{WHOLE_CORPUS}+{g}", f"{r}+{g}")
        for g in generators
        for r in retrievers
        if r not in (CLOSED_BOOK, WHOLE_CORPUS) and {f"{WHOLE_CORPUS}+{g}", f"{r}+{g}"} <= names
    ]
    pairs += [
        ("corpus", f"{WHOLE_CORPUS}+{g}", f"{r}+{h}")
        for g, counterparts in (corpus_counterparts or {}).items()
        for h in counterparts
        for r in retrievers
        if r not in (CLOSED_BOOK, WHOLE_CORPUS) and {f"{WHOLE_CORPUS}+{g}", f"{r}+{h}"} <= names
    ]
    pairs += [
        (factor, f"{r}+{g}", f"{r}+{base}")
        for g, (factor, base) in (prompt_variants or {}).items()
        for r in retrievers
        if {f"{r}+{g}", f"{r}+{base}"} <= names
    ]
    return pairs


def compare(pairs: list[tuple[str, str, str]], f1: PerQuestion, resample: dict) -> list[Comparison]:
    """Paired interval and randomization test of each pair, Holm-adjusted over all of them."""
    differences = [paired_difference(f1[a], f1[b], **resample) for _, a, b in pairs]
    p_values = [paired_p_value(f1[a], f1[b], seed=resample["seed"]) for _, a, b in pairs]
    return [
        Comparison(factor, a, b, difference, p, adjusted, _outcome(difference, adjusted))
        for (factor, a, b), difference, p, adjusted in zip(pairs, differences, p_values, holm(p_values))
    ]


def _comparison_line(c: Comparison, metric: str = "F1") -> str:
    return (
        f"{c.a} {c.outcome} {c.b}: {metric} difference {c.difference.mean:+.3f}, paired 95% CI {c.difference.low:+.3f} to "
        f"{c.difference.high:+.3f}, Holm-adjusted p {c.adjusted_p_value:.3f}"
    )


FACTOR_LABELS = {
    "retrieval": "Retrieval vs closed book (each retriever against none, within each generator)",
    "fine-tuning": "Fine-tuning vs not (each fine-tuned generator against base, within each retriever)",
    "method": "Fine-tuning method (each pair of generators fine-tuned from the same model for the same test, within each "
              "retriever: LoRA, soft prompt, full, from scratch)",
    "rag-vs-fine-tune": "Retrieval vs closed-book fine-tuning (each retriever with base against each generator trained "
                        "to answer closed book, tested closed book)",
    "corpus": "Whole corpus in the prompt vs retrieval (the corpus arm against each retriever, within each generator, "
              "and a generator trained with the corpus in its prompt against its counterpart trained for retrieval)",
    "context": "Sentences vs whole passages (each sentence-context variant against base, within each retriever)",
    "prompting": "Few-shot vs zero-shot (each few-shot variant against base, within each retriever)",
}


def verdict(
    scores: list[CombinationScore], f1: PerQuestion, fine_tuned: dict[str, str], resample: dict, closed_book: frozenset[str] = frozenset(),
    prompt_variants: dict[str, tuple[str, str]] | None = None, corpus_counterparts: dict[str, list[str]] | None = None,
) -> Verdict:
    """Best by mean F1, the cheapest within noise of it, and the one-factor comparisons (see the module docstring)."""
    scored = [s for s in scores if s.f1]
    if not scored:
        return Verdict(None, None, [], [], COST_ORDER, ["No question with a gold answer was scored."])
    best = max(scored, key=lambda s: s.f1.mean)
    against_best = compare([("best", best.combination, s.combination) for s in scored if s is not best], f1, resample)
    within = [best] + [s for s, c in zip((s for s in scored if s is not best), against_best) if c.adjusted_p_value >= ALPHA]
    cheapest = min(within, key=CombinationScore.cost)
    comparisons = compare(one_factor_pairs(scored, fine_tuned, closed_book, prompt_variants, corpus_counterparts), f1, resample)
    summary = [
        f"Best quality: {best.combination}, F1 {best.f1.mean:.3f} (95% CI {best.f1.low:.3f}-{best.f1.high:.3f}).",
        f"Cheapest within noise of it: {cheapest.combination}, F1 {cheapest.f1.mean:.3f}, "
        f"{cheapest.trainable_params if cheapest.trainable_params is not None else 'unknown'} trainable parameters, "
        f"latency p50 {cheapest.latency_p50_s:.2f} s, {cheapest.prompt_tokens:.0f} prompt tokens "
        f"({len(within)} of {len(scored)} combinations are within noise of the best: a paired randomization test, "
        f"Holm-adjusted, does not tell them apart at {ALPHA:.0%}; cost order: {COST_ORDER}).",
    ]
    for factor, label in FACTOR_LABELS.items():
        family = [c for c in comparisons if c.factor == factor]
        if family:
            counts = {outcome: sum(c.outcome == outcome for c in family) for outcome in ("clearly beats", "within noise of", "clearly loses to")}
            summary.append(
                f"{label}: of {len(family)} comparisons, {counts['clearly beats']} clearly better, "
                f"{counts['within noise of']} within noise, {counts['clearly loses to']} clearly worse "
                f"(Holm-adjusted over all {len(comparisons)} comparisons, {ALPHA:.0%} family-wise)."
            )
            summary += [f"{label.split(' (')[0]}: {_comparison_line(c)}." for c in family if c.outcome != "within noise of"]
    return Verdict(best.combination, cheapest.combination, [s.combination for s in within], comparisons, COST_ORDER, summary)


# (factor, a, b) of the retrieval comparisons: one thing changed between a and b.
RETRIEVAL_PAIRS = (("embedder fine-tuning", "dense-ft", "dense"),)


def score_retrieval(rankings: list[Ranking], settings: EvalConfig) -> tuple[list[RetrieverScore], list[Comparison]]:
    """Recall@1..k, MRR@k (with its interval) and nDCG@k of each retriever over its questions with gold chunks, and
    :data:`RETRIEVAL_PAIRS` compared on paired per-question MRR, Holm-adjusted among themselves."""
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    k, scores, mrr = settings.k, [], {}
    for ranking in rankings:
        gold = {qid: relevant for qid, relevant in ranking.relevant.items() if relevant and qid in ranking.ranked}
        if not gold:
            continue
        mrr[ranking.retriever] = {qid: mrr_at_k(ranking.ranked[qid], relevant, k) for qid, relevant in gold.items()}
        scores.append(RetrieverScore(
            ranking.retriever, ranking.answered, len(gold),
            [_mean([recall_at_k(ranking.ranked[qid], relevant, cutoff) for qid, relevant in gold.items()]) for cutoff in range(1, k + 1)],
            bootstrap_ci(list(mrr[ranking.retriever].values()), **resample),
            _mean([ndcg_at_k(ranking.ranked[qid], relevant, k) for qid, relevant in gold.items()]),
            1000 * ranking.search_seconds / len(ranking.ranked),
        ))
    pairs = [(factor, a, b) for factor, a, b in RETRIEVAL_PAIRS if a in mrr and b in mrr]
    return scores, compare(pairs, mrr, resample)


def score_probe(predictions: list[Prediction], generators: list[GeneratorSpec], settings: EvalConfig) -> list[ProbeScore]:
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    by_generator = {g.name: [p for p in predictions if p.suite == "probe" and p.generator == g.name] for g in generators}
    by_generator = {name: rows for name, rows in by_generator.items() if rows}
    baseline = {g.name: g.baseline for g in generators}
    f1 = _per_question_f1([p for rows in by_generator.values() for p in rows], key=lambda p: p.generator)
    return [
        ProbeScore(
            name,
            len(rows),
            bootstrap_ci([p.exact_match for p in rows if p.answers], **resample),
            bootstrap_ci(list(f1.get(name, {}).values()), **resample),
            paired_difference(f1[name], f1[baseline[name]], **resample)
            if name != baseline[name] and baseline[name] in f1 and name in f1
            else None,
        )
        for name, rows in by_generator.items()
    ]


def build_report(
    predictions: list[Prediction],
    settings: EvalConfig,
    retrievers: list[RetrieverSpec],
    generators: list[GeneratorSpec],
    questions: set[str],
    probes: set[str],
    skipped: list[Skipped],
    wall_seconds: float,
    gold: GoldChunks | None = None,
    notes: list[str] | None = None,
    models: dict[str, ModelCost] | None = None,
    artifacts: list[Artifact] | None = None,
    rankings: list[Ranking] | None = None,
) -> Report:
    """Scores for this run's combinations over this run's question and probe ids; other lines are ignored.

    ``artifacts``: every artifact scored (each fold's under ``--folds``); default, those of the specs.
    ``rankings``: every ranking retriever's results, scored in the report's retrieval section.
    """
    predictions = [p for p in predictions if p.qid in (questions if p.suite == "qa" else probes)]
    if artifacts is None:
        artifacts = [spec.artifact for spec in [*retrievers, *generators] if spec.artifact]
    scores = []
    for retriever in retrievers:
        for generator in generators:
            key = f"{retriever.name}+{generator.name}"
            rows = [p for p in predictions if p.suite == "qa" and p.combination == key]
            if rows:
                model = (models or {}).get(generator.config.generator)
                scores.append(score_combination(rows, retriever, generator, settings, model, artifacts))
    fine_tuned = {g.name: g.baseline for g in generators if g.fine_tuned}
    planned_generators = {g.name for g in generators}
    kinds = {p.qid: p.kind for p in predictions if p.suite == "qa" and p.answers and p.kind}
    f1 = _per_question_f1([p for p in predictions if p.suite == "qa"], key=lambda p: p.combination)
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    answers_verdict = verdict(scores, f1, fine_tuned, resample, frozenset(g.name for g in generators if g.only_with == CLOSED_BOOK),
                              {g.name: g.prompt_factor for g in generators if g.prompt_factor}, retrieval_counterparts(generators))
    retrieval, retrieval_comparisons = score_retrieval(rankings or [], settings)
    retrieval_lines = [f"{c.factor.capitalize()} (MRR@{settings.k}): {_comparison_line(c, 'MRR')}." for c in retrieval_comparisons]
    return Report(
        settings,
        len(questions),
        scores,
        score_probe(predictions, generators, settings),
        skipped,
        artifacts,
        dataclasses.replace(answers_verdict, summary=answers_verdict.summary + retrieval_lines),
        round(wall_seconds, 1),
        round(sum(p.latency_s for p in predictions if p.generator in planned_generators), 1),
        None if gold is None else {"holding_answer": gold.holding_answer, "whole_document": gold.whole_document,
                                   "not_indexed": gold.not_indexed},
        dict(sorted(Counter(kinds.values()).items())),
        list(notes or []),
        [cost for model, cost in (models or {}).items() if model in {g.config.generator for g in generators}],
        retrieval,
        retrieval_comparisons,
    )


# ---------------------------------------------------------------------------- report.md


def _interval(value: Interval | None) -> str:
    return "–" if value is None else f"{value.mean:.3f} ({value.low:.2f}–{value.high:.2f})"


def _signed_interval(value: Interval) -> str:
    return f"{value.mean:+.3f} ({value.low:+.2f} to {value.high:+.2f})"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[CombinationScore], float | None]
    better: str | None  # "max" | "min" | None (not marked)
    text: Callable[[CombinationScore], str]
    optional: bool = False  # left out of the table when no row has a value (a GPU's memory, on a CPU)
    legend: str = ""  # added to the table's legend where an optional column is shown


def _numeric(header: str, value: Callable[[CombinationScore], float | None], better: str | None, digits: int) -> Column:
    return Column(header, value, better, lambda s: "–" if value(s) is None else f"{value(s):,.{digits}f}")


def _columns(k: int) -> list[Column]:
    recall = [_numeric(f"R@{n}", lambda s, n=n: s.recall[n - 1] if s.recall else None, "max", 3) for n in RECALL_COLUMNS if n <= k]
    return [
        Column("EM (95% CI)", lambda s: s.exact_match.mean if s.exact_match else None, "max", lambda s: _interval(s.exact_match)),
        Column("F1 (95% CI)", lambda s: s.f1.mean if s.f1 else None, "max", lambda s: _interval(s.f1)),
        *recall,
        _numeric(f"MRR@{k}", lambda s: s.mrr, "max", 3),
        _numeric(f"nDCG@{k}", lambda s: s.ndcg, "max", 3),
        _numeric("Gold in prompt", lambda s: s.gold_in_prompt, "max", 3),
        _numeric("Grounded", lambda s: s.groundedness, "max", 2),
        _numeric("Abstain (unans.)", lambda s: s.abstention, "max", 2),
        _numeric("Abstain (ans.)", lambda s: s.false_abstention, "min", 2),
        _numeric("Prompt tok", lambda s: s.prompt_tokens, "min", 0),
        _numeric("p50 s", lambda s: s.latency_p50_s, "min", 2),
        _numeric("p95 s", lambda s: s.latency_p95_s, "min", 2),
        _numeric("q/s", lambda s: s.questions_per_s, "max", 2),
        _numeric("Peak MB", lambda s: s.peak_rss_mb, None, 0),  # a high-water mark: not comparable across rows
        dataclasses.replace(_numeric("GPU peak MB", lambda s: s.peak_gpu_mb, "min", 0), optional=True,  # reset per row
                            legend="; \"GPU peak MB\" is the GPU allocator's peak while that row answered, models included"),
        _numeric("Train s", lambda s: s.train_seconds, "min", 0),
        _numeric("Trainable", lambda s: s.trainable_params, "min", 0),
        _numeric("Artifact MB", lambda s: s.artifact_bytes / 1e6, "min", 1),
        _numeric("Model params M", lambda s: None if s.model_params is None else s.model_params / 1e6, "min", 0),
        _numeric("Load s", lambda s: s.load_seconds, "min", 1),
        _numeric("Decode tok/s", lambda s: s.decode_tokens_per_s, "max", 1),
    ]


def _shown_columns(scores: list[CombinationScore], k: int) -> list[Column]:
    """The table's columns: an optional one only where a row has a value."""
    return [c for c in _columns(k) if not c.optional or any(c.value(s) is not None for s in scores)]


def _table(scores: list[CombinationScore], columns: list[Column]) -> list[str]:
    lines = ["| Combination | " + " | ".join(c.header for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    best = {}
    for column in columns:
        values = [v for s in scores if (v := column.value(s)) is not None]
        # A column where every row scores the same singles nothing out (0.00 abstention everywhere is no win).
        if column.better and values and not all(math.isclose(v, values[0]) for v in values):
            best[column.header] = max(values) if column.better == "max" else min(values)
    for s in scores:
        cells = []
        for column in columns:
            value, text = column.value(s), column.text(s)
            marked = value is not None and column.header in best and math.isclose(value, best[column.header])
            cells.append(f"**{text}**" if marked else text)
        lines.append(f"| {s.combination} | " + " | ".join(cells) + " |")
    return lines


def _comparison_rows(comparisons: list[Comparison]) -> list[str]:
    return [
        f"| {c.factor} | {c.a} | {c.b} | {_signed_interval(c.difference)} | {c.p_value:.4f} | {c.adjusted_p_value:.4f} | a {c.outcome} b |"
        for c in comparisons
    ]


def _retrieval_section(report: Report) -> list[str]:
    """Every ranking retriever's quality, those scored on their ranking alone (``--ranking-only``) included."""
    if not report.retrieval:
        return []
    k = report.settings.k
    cutoffs = [n for n in RECALL_COLUMNS if n <= k]
    lines = [
        "", "## Retrieval", "",
        "Every ranking retriever over the questions with gold chunks, whether answers were generated with it (Answers: "
        "yes) or it was scored on its ranking alone (`--ranking-only`); MRR with its 95% bootstrap interval; search time "
        "per question, the query embedding included.", "",
        "| Retriever | Answers | Questions | " + " | ".join(f"R@{n}" for n in cutoffs) + f" | MRR@{k} (95% CI) | nDCG@{k} | Search ms |",
        "|---" * (len(cutoffs) + 6) + "|",
    ]
    lines += [
        f"| {s.retriever} | {'yes' if s.answered else 'no'} | {s.questions} | " + " | ".join(f"{s.recall[n - 1]:.3f}" for n in cutoffs)
        + f" | {_interval(s.mrr)} | {s.ndcg:.3f} | {s.search_ms:.1f} |"
        for s in report.retrieval
    ]
    if report.retrieval_comparisons:
        lines += [
            "", f"Paired per-question MRR@{k} difference (a - b), p from a paired randomization test, Holm-adjusted over "
            "the rows of this table:", "",
            "| Factor | a | b | MRR difference (paired 95% CI) | p | Holm p | Outcome |", "|---|---|---|---|---|---|---|",
            *_comparison_rows(report.retrieval_comparisons),
        ]
    return lines


def render_markdown(report: Report) -> str:
    settings = report.settings
    columns = _shown_columns(report.combinations, settings.k)
    lines = [
        "# RAG or fine-tune? Evaluation report",
        "",
        f"QA set `{settings.qa}` ("
        + (f"{settings.folds}-fold cross-validation" if settings.folds else f"{settings.split} split")
        + (" by document: no model trained on a scored question's document" if settings.split_by == "document" else "")
        + f", {report.questions} questions"
        + (f", seeded sample of {settings.limit}" if settings.limit else "")
        + f"); {len(report.combinations)} combinations; {report.answer_seconds:.0f} s spent answering "
        f"(resumed runs included), wall time of this run {report.wall_seconds:.0f} s.",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in report.verdict.summary],
        "",
        "## Results",
        "",
        *_table(report.combinations, columns),
        "",
        f"Best figure per column in bold. EM and F1 (SQuAD normalization) over the questions with a gold answer, "
        f"with {settings.bootstrap_resamples}-resample 95% bootstrap intervals; retrieval metrics against the gold chunks; "
        "\"Gold in prompt\" is the share of questions with gold chunks whose prompt holds one after packing under the "
        f"budget (the `{WHOLE_CORPUS}` retriever ranks nothing: its prompt is the corpus in reading order, as much as "
        f"{settings.rag.corpus_context_tokens} tokens hold); "
        "groundedness is the share of the answer's content words found in the prompt's passages; \"Abstain (unans.)\" is "
        "the share of unanswerable questions answered \"I don't know\" (higher is better), \"Abstain (ans.)\" the share "
        "of answerable ones wrongly declined (lower is better); latency is per question (batched generation time shared "
        "over the batch, plus retrieval and prompt building); peak memory is the process high-water mark"
        + "".join(c.legend for c in columns)
        + "; the model columns give the generator model's parameters, its load time from the cached float weights and "
        "its greedy decoding speed after a one-token prompt (measured when this run or an earlier one into this folder loaded it).",
    ]
    lines += _retrieval_section(report)
    if report.verdict.comparisons:
        lines += [
            "", "## One factor at a time", "",
            "Each row changes one factor, all else equal. Paired 95% CI of the per-question F1 difference (a - b); p from a "
            f"paired randomization test, Holm-adjusted over all {len(report.verdict.comparisons)} rows.", "",
            "| Factor | a | b | F1 difference (paired 95% CI) | p | Holm p | Outcome |", "|---|---|---|---|---|---|---|",
        ]
        lines += _comparison_rows(report.verdict.comparisons)
    if settings.folds:
        folds = range(settings.folds)
        lines += [
            "", f"## Across the {settings.folds} folds", "",
            "Each question was scored once, in its fold, by the artifacts trained on the other folds; the results above pool "
            "all folds. Mean F1 of each fold's answerable questions, and the spread (highest - lowest fold):", "",
            "| Combination | " + " | ".join(f"fold {fold}" for fold in folds) + " | spread |", "|---" * (settings.folds + 2) + "|",
        ]
        for s in report.combinations:
            values = [s.f1_by_fold.get(fold) for fold in folds]
            known = [v for v in values if v is not None]
            spread = f"{max(known) - min(known):.3f}" if known else "–"
            lines.append(f"| {s.combination} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values) + f" | {spread} |")
    if report.questions_by_kind:
        kinds = list(report.questions_by_kind)
        lines += [
            "", "## F1 by question kind", "",
            "| Combination | " + " | ".join(f"{kind} ({report.questions_by_kind[kind]})" for kind in kinds) + " |",
            "|---" * (len(kinds) + 1) + "|",
        ]
        lines += [
            f"| {s.combination} | " + " | ".join(f"{s.f1_by_kind[k]:.3f}" if k in s.f1_by_kind else "–" for k in kinds) + " |"
            for s in report.combinations
        ]
    checks = []
    if report.gold:
        checks.append(
            f"Gold chunks: {report.gold['holding_answer']} answerable questions have chunks holding an answer (whole words, "
            f"SQuAD-normalized); {report.gold['whole_document']} have none (yes/no, paraphrased or split answers: their whole "
            f"source document counts as relevant); {report.gold['not_indexed']} have no source document in the index "
            "(scored on the answer only)."
        )
    checks += report.notes
    if checks:
        lines += ["", "## Checks", "", *[f"- {line}" for line in checks]]
    if report.forgetting:
        lines += ["", "## Forgetting (closed book, general-knowledge probe)", "", "| Generator | Questions | EM | F1 | F1 change vs base (paired 95% CI) |", "|---|---|---|---|---|"]
        for probe in report.forgetting:
            change = "–" if probe.f1_change is None else _signed_interval(probe.f1_change)
            lines.append(f"| {probe.generator} | {probe.questions} | {_interval(probe.exact_match)} | {_interval(probe.f1)} | {change} |")
    if report.skipped:
        lines += ["", "## Skipped", "", *[f"- {s.variant}: {s.reason}" for s in report.skipped]]
    lines += ["", "Charts: `quality_vs_cost.png`, `recall_at_k.png`. Per-question answers: `predictions.jsonl`.", ""]
    return "\n".join(lines)


def write_report(report: Report, out: Path) -> None:
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    atomic_write_text(out / "report.md", render_markdown(report))
