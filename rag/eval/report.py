"""The "RAG or fine-tune?" report: scores per combination, forgetting, verdict; report.md and report.json.

Everything is computed from predictions.jsonl, so a resumed run reports on all
its answers. The verdict names the combination with the best mean F1 and the
cheapest combination within noise of it: the paired bootstrap 95% interval of
their per-question F1 difference includes 0. On a small sample such a
difference can be noise, and a cheaper setup that may be as good is the
practical answer (Ovadia et al., 2024, "Fine-tuning or retrieval?"; Zhang et
al., 2024, RAFT). Comparisons (retrieval against closed book, fine-tuned
against not) and forgetting use the same paired intervals.

Cost order (:data:`COST_ORDER`): fewer trainable parameters first (a
combination that needs no training beats one that does), then lower latency
p50, then fewer prompt tokens.

    >>> report = build_report(log.predictions, settings, retrievers, generators, qids, probe_ids, skipped, 12.0)  # doctest: +SKIP
    >>> write_report(report, Path("reports/vellmar"))                                           # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.config import CLOSED_BOOK
from rag.eval.artifacts import Artifact
from rag.eval.config import EvalConfig
from rag.eval.plan import Skipped
from rag.eval.variants import GeneratorSpec, RetrieverSpec
from rag.eval.metrics import Interval, bootstrap_ci, paired_difference
from rag.eval.predictions import Prediction
from rag.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from rag.runtime import atomic_write_text

COST_ORDER = "fewest trainable parameters (no training first), then lowest latency p50, then fewest prompt tokens"
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
    groundedness: float | None
    abstention: float | None  # share of unanswerable questions answered "I don't know"
    prompt_tokens: float
    latency_p50_s: float
    latency_p95_s: float
    questions_per_s: float
    peak_rss_mb: float  # process high-water mark (it includes the models loaded before)
    train_seconds: float | None  # from the artifacts' run.json; 0 without training, None if unknown
    trainable_params: int | None
    artifact_bytes: int

    def cost(self) -> tuple[float, float, float]:
        """Sort key of :data:`COST_ORDER`."""
        trainable = math.inf if self.trainable_params is None else self.trainable_params
        return trainable, self.latency_p50_s, self.prompt_tokens


@dataclass(frozen=True)
class ProbeScore:
    """A generator's closed-book score on the general-knowledge probe (forgetting after fine-tuning)."""

    generator: str
    questions: int
    exact_match: Interval | None
    f1: Interval | None
    f1_change: Interval | None  # paired difference from the base model's F1; below 0: knowledge was forgotten


@dataclass(frozen=True)
class Verdict:
    best: str | None
    cheapest: str | None  # cheapest combination within noise of the best one
    within_noise: list[str]  # combinations whose paired F1 difference from the best one's has 0 in its interval
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

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _training_cost(artifacts: list[Artifact]) -> tuple[float | None, int | None, int]:
    seconds = [a.wall_seconds for a in artifacts]
    params = [a.trainable_params for a in artifacts]
    return (
        None if None in seconds else float(sum(seconds)),
        None if None in params else int(sum(params)),
        sum(a.artifact_bytes for a in artifacts),
    )


def score_combination(
    predictions: list[Prediction], retriever: RetrieverSpec, generator: GeneratorSpec, settings: EvalConfig
) -> CombinationScore:
    answerable = [p for p in predictions if p.answers]
    with_gold = [p for p in predictions if p.relevant]
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    ranked = retriever.method != CLOSED_BOOK and with_gold
    latencies = [p.latency_s for p in predictions]
    train_seconds, trainable, size = _training_cost([a for a in (retriever.artifact, generator.artifact) if a])
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
        groundedness=_mean([p.groundedness for p in predictions if p.groundedness is not None]),
        abstention=_mean([float(p.abstained) for p in predictions if not p.answers]),
        prompt_tokens=float(np.mean([p.prompt_tokens for p in predictions])),
        latency_p50_s=float(np.percentile(latencies, 50)),
        latency_p95_s=float(np.percentile(latencies, 95)),
        questions_per_s=len(latencies) / sum(latencies),
        peak_rss_mb=max(p.peak_rss_mb for p in predictions),
        train_seconds=train_seconds,
        trainable_params=trainable,
        artifact_bytes=size,
    )


PerQuestion = dict[str, dict[str, float]]  # name -> qid -> F1, the answerable questions only


def _per_question_f1(predictions: list[Prediction], key: Callable[[Prediction], str]) -> PerQuestion:
    scores: PerQuestion = {}
    for p in predictions:
        if p.answers:
            scores.setdefault(key(p), {})[p.qid] = p.f1
    return scores


def _compare(label: str, a: CombinationScore | None, b: CombinationScore | None, f1: PerQuestion, resample: dict) -> str | None:
    """One verdict line: does ``a`` clearly beat ``b`` (the paired interval of F1(a) - F1(b) above 0)?"""
    if not (a and b and a.f1 and b.f1):
        return None
    difference = paired_difference(f1[a.combination], f1[b.combination], **resample)
    if difference is None:
        return None
    if difference.low > 0:
        outcome = "clearly beats"
    elif difference.high < 0:
        outcome = "clearly loses to"
    else:
        outcome = "is within noise of"
    return (
        f"{label}: {a.combination} (F1 {a.f1.mean:.3f}) {outcome} {b.combination} (F1 {b.f1.mean:.3f}): "
        f"difference {difference.mean:+.3f}, paired 95% CI {difference.low:+.3f} to {difference.high:+.3f}."
    )


def verdict(scores: list[CombinationScore], f1: PerQuestion, fine_tuned: set[str], resample: dict) -> Verdict:
    """Best by mean F1, the cheapest within noise of it, and the retrieval and fine-tuning comparisons."""
    scored = [s for s in scores if s.f1]
    if not scored:
        return Verdict(None, None, [], COST_ORDER, ["No question with a gold answer was scored."])
    best = max(scored, key=lambda s: s.f1.mean)

    def within_noise(s: CombinationScore) -> bool:
        difference = paired_difference(f1[best.combination], f1[s.combination], **resample)
        return difference is None or difference.low <= 0

    within = [s for s in scored if within_noise(s)]
    cheapest = min(within, key=CombinationScore.cost)

    def top(keep: Callable[[CombinationScore], bool]) -> CombinationScore | None:
        return max((s for s in scored if keep(s)), key=lambda s: s.f1.mean, default=None)

    summary = [
        f"Best quality: {best.combination}, F1 {best.f1.mean:.3f} (95% CI {best.f1.low:.3f}-{best.f1.high:.3f}).",
        f"Cheapest within noise of it: {cheapest.combination}, F1 {cheapest.f1.mean:.3f}, "
        f"{cheapest.trainable_params if cheapest.trainable_params is not None else 'unknown'} trainable parameters, "
        f"latency p50 {cheapest.latency_p50_s:.2f} s, {cheapest.prompt_tokens:.0f} prompt tokens "
        f"({len(within)} of {len(scored)} combinations are within noise of the best: the paired 95% interval of "
        f"their F1 difference includes 0; cost order: {COST_ORDER}).",
    ]
    comparisons = [
        ("Retrieval vs closed book", top(lambda s: s.retriever != CLOSED_BOOK), top(lambda s: s.retriever == CLOSED_BOOK)),
        ("Fine-tuning vs not (closed book)", top(lambda s: s.generator in fine_tuned and s.retriever == CLOSED_BOOK),
         top(lambda s: s.generator not in fine_tuned and s.retriever == CLOSED_BOOK)),
        ("Fine-tuning vs not (with retrieval)", top(lambda s: s.generator in fine_tuned and s.retriever != CLOSED_BOOK),
         top(lambda s: s.generator not in fine_tuned and s.retriever != CLOSED_BOOK)),
    ]
    summary += [line for label, a, b in comparisons if (line := _compare(label, a, b, f1, resample))]
    return Verdict(best.combination, cheapest.combination, [s.combination for s in within], COST_ORDER, summary)


def score_probe(predictions: list[Prediction], generators: list[GeneratorSpec], settings: EvalConfig) -> list[ProbeScore]:
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    by_generator = {g.name: [p for p in predictions if p.suite == "probe" and p.generator == g.name] for g in generators}
    by_generator = {name: rows for name, rows in by_generator.items() if rows}
    f1 = _per_question_f1([p for rows in by_generator.values() for p in rows], key=lambda p: p.generator)
    return [
        ProbeScore(
            name,
            len(rows),
            bootstrap_ci([p.exact_match for p in rows if p.answers], **resample),
            bootstrap_ci(list(f1.get(name, {}).values()), **resample),
            paired_difference(f1[name], f1["base"], **resample) if name != "base" and "base" in f1 and name in f1 else None,
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
) -> Report:
    """Scores for this run's combinations over this run's question and probe ids; other lines are ignored."""
    predictions = [p for p in predictions if p.qid in (questions if p.suite == "qa" else probes)]
    scores = []
    for retriever in retrievers:
        for generator in generators:
            key = f"{retriever.name}+{generator.name}"
            rows = [p for p in predictions if p.suite == "qa" and p.combination == key]
            if rows:
                scores.append(score_combination(rows, retriever, generator, settings))
    artifacts = [spec.artifact for spec in [*retrievers, *generators] if spec.artifact]
    fine_tuned = {g.name for g in generators if g.fine_tuned}
    planned_generators = {g.name for g in generators}
    f1 = _per_question_f1([p for p in predictions if p.suite == "qa"], key=lambda p: p.combination)
    resample = {"resamples": settings.bootstrap_resamples, "seed": settings.seed}
    return Report(
        settings,
        len(questions),
        scores,
        score_probe(predictions, generators, settings),
        skipped,
        artifacts,
        verdict(scores, f1, fine_tuned, resample),
        round(wall_seconds, 1),
        round(sum(p.latency_s for p in predictions if p.generator in planned_generators), 1),
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
        _numeric("Grounded", lambda s: s.groundedness, "max", 2),
        _numeric("Abstain", lambda s: s.abstention, "max", 2),
        _numeric("Prompt tok", lambda s: s.prompt_tokens, "min", 0),
        _numeric("p50 s", lambda s: s.latency_p50_s, "min", 2),
        _numeric("p95 s", lambda s: s.latency_p95_s, "min", 2),
        _numeric("q/s", lambda s: s.questions_per_s, "max", 2),
        _numeric("Peak MB", lambda s: s.peak_rss_mb, None, 0),  # a high-water mark: not comparable across rows
        _numeric("Train s", lambda s: s.train_seconds, "min", 0),
        _numeric("Trainable", lambda s: s.trainable_params, "min", 0),
        _numeric("Artifact MB", lambda s: s.artifact_bytes / 1e6, "min", 1),
    ]


def _table(scores: list[CombinationScore], k: int) -> list[str]:
    columns = _columns(k)
    lines = ["| Combination | " + " | ".join(c.header for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    best = {}
    for column in columns:
        values = [v for s in scores if (v := column.value(s)) is not None]
        if column.better and values:
            best[column.header] = max(values) if column.better == "max" else min(values)
    for s in scores:
        cells = []
        for column in columns:
            value, text = column.value(s), column.text(s)
            marked = value is not None and column.header in best and math.isclose(value, best[column.header])
            cells.append(f"**{text}**" if marked else text)
        lines.append(f"| {s.combination} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: Report) -> str:
    settings = report.settings
    lines = [
        "# RAG or fine-tune? Evaluation report",
        "",
        f"QA set `{settings.qa}` ({settings.split} split, {report.questions} questions"
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
        *_table(report.combinations, settings.k),
        "",
        f"Best figure per column in bold. EM and F1 (SQuAD normalization) over the questions with a gold answer, "
        f"with {settings.bootstrap_resamples}-resample 95% bootstrap intervals; retrieval metrics against the gold chunks; "
        "groundedness is the share of the answer's content words found in the prompt's passages; abstention is the share "
        "of unanswerable questions answered \"I don't know\"; latency is per question (batched generation time shared "
        "over the batch, plus retrieval and prompt building); peak memory is the process high-water mark.",
    ]
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
