"""PNG charts of a report: quality versus cost, and recall@k curves per retriever.

    >>> write_charts(report, Path("reports/vellmar"))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from rag.eval.report import Report  # noqa: E402


def quality_vs_cost(report: Report, path: Path) -> None:
    """F1 (with its 95% interval) against latency p50 per question, one labelled point per combination."""
    scored = [s for s in report.combinations if s.f1]
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for number, s in enumerate(scored):
        error = [[s.f1.mean - s.f1.low], [s.f1.high - s.f1.mean]]
        axes.errorbar(s.latency_p50_s, s.f1.mean, yerr=error, fmt="o", capsize=3, color="C0" if s.retriever != "none" else "C3")
        # Labels alternate above and below: combinations often sit on the same spot.
        axes.annotate(s.combination, (s.latency_p50_s, s.f1.mean), textcoords="offset points", xytext=(5, 4 if number % 2 else -11), fontsize=8)
    axes.set_xlabel("latency p50 per question (s)")
    axes.set_ylabel("token F1 (95% bootstrap CI)")
    axes.set_title("Quality vs cost (red: closed book)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def recall_curves(report: Report, path: Path) -> None:
    """Recall@k for k = 1..K, one line per retriever (retrieval does not depend on the generator)."""
    curves = {}
    for s in report.combinations:
        if s.recall and s.retriever not in curves:
            curves[s.retriever] = s.recall
    figure, axes = plt.subplots(figsize=(7, 5))
    for name, recall in curves.items():
        axes.plot(range(1, len(recall) + 1), recall, marker="o", label=name)
    axes.set_xlabel("k")
    axes.set_ylabel("recall@k")
    axes.set_ylim(0, 1.02)
    axes.set_title("Recall@k against the gold chunks")
    if curves:
        axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_charts(report: Report, out: Path) -> None:
    quality_vs_cost(report, out / "quality_vs_cost.png")
    recall_curves(report, out / "recall_at_k.png")
