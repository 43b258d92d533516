"""PNG charts of a report: quality versus cost, and recall@k curves per retriever.

    >>> write_charts(report, Path("reports/vellmar"))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from rag.eval.report import Report  # noqa: E402


MARKERS = "sov^Dph*"  # one per retriever, in the report's order


def quality_vs_cost(report: Report, path: Path) -> None:
    """F1 (with its 95% interval) against latency p50 per question: colour = generator, marker = retriever.

    Legends rather than per-point labels: with 25 combinations many points sit on the same spot.
    """
    from matplotlib.lines import Line2D

    scored = [s for s in report.combinations if s.f1]
    generators = list(dict.fromkeys(s.generator for s in scored))
    retrievers = list(dict.fromkeys(s.retriever for s in scored))
    colour = {name: f"C{number % 10}" for number, name in enumerate(generators)}
    marker = {name: MARKERS[number % len(MARKERS)] for number, name in enumerate(retrievers)}
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for s in scored:
        error = [[s.f1.mean - s.f1.low], [s.f1.high - s.f1.mean]]
        axes.errorbar(s.latency_p50_s, s.f1.mean, yerr=error, fmt=marker[s.retriever], color=colour[s.generator],
                      markersize=7, capsize=3, elinewidth=1, alpha=0.8)
    by_generator = [Line2D([], [], color=colour[g], marker="o", linestyle="", label=g) for g in generators]
    by_retriever = [Line2D([], [], color="0.3", marker=marker[r], linestyle="", label=r) for r in retrievers]
    axes.add_artist(axes.legend(handles=by_generator, title="generator", loc="upper left", fontsize=8))
    axes.legend(handles=by_retriever, title="retrieval", loc="upper center", fontsize=8)
    axes.set_xlabel("latency p50 per question (s)")
    axes.set_ylabel("token F1 (95% bootstrap CI)")
    axes.set_title("Quality vs cost per combination")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def recall_curves(report: Report, path: Path) -> None:
    """Recall@k for k = 1..K, one line per ranking retriever, those scored on their ranking alone included."""
    curves = {s.retriever: s.recall for s in report.retrieval}
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
