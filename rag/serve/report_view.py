"""An eval report folder as the report page reads it: report.json, the per-question answers, the charts.

Only what :mod:`rag.eval` writes is read, by fixed names: the page can never ask
for another file of the folder.

    >>> data = report_data(Path("reports/vellmar"))   # doctest: +SKIP
    >>> data["report"]["verdict"]["best"]              # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

CHARTS = ("quality_vs_cost.png", "recall_at_k.png")  # rag.eval.charts writes these
# What the page shows of each predictions.jsonl line.
PREDICTION_FIELDS = ("combination", "qid", "question", "answers", "answer", "generated", "exact_match", "f1", "abstained")


def report_data(folder: Path) -> dict:
    """``{"folder", "report", "predictions", "charts"}``: the question-answering predictions of the scored combinations."""
    path = folder / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no report.json: run `python -m rag.eval ... --out {folder}`")
    report = json.loads(path.read_text(encoding="utf-8"))
    scored = {c["combination"] for c in report.get("combinations", [])}
    predictions = []
    log = folder / "predictions.jsonl"
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a killed eval; the eval drops it on its next run
            if row.get("suite") == "qa" and row.get("combination") in scored:
                predictions.append({key: row.get(key) for key in PREDICTION_FIELDS})
    return {
        "folder": folder.name,
        "report": report,
        "predictions": predictions,
        "charts": [name for name in CHARTS if (folder / name).is_file()],
    }


def chart_path(folder: Path, name: str) -> Path | None:
    """The chart ``name`` if it is one of :data:`CHARTS` and exists, else None."""
    path = folder / name
    return path if name in CHARTS and path.is_file() else None
