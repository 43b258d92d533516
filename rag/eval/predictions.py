"""predictions.jsonl: one scored answer per line, appended batch by batch, read back to resume.

A killed run leaves at most one torn last line, which is dropped on the next
start; every complete line is a finished (suite, combination, question) that a
rerun does not generate again. The report is always rebuilt from this file.

    >>> log = PredictionLog(Path("reports/vellmar/predictions.jsonl"))   # doctest: +SKIP
    >>> ("qa", "bm25+base", "q00003") in log.done                       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Prediction:
    suite: str  # "qa", or "probe" for the forgetting probe
    combination: str  # "retriever+generator", e.g. "bm25+lora"
    retriever: str
    generator: str
    qid: str
    question: str
    answers: list[str]  # gold answers; empty: the corpus does not hold the answer
    generated: str  # the model's raw output
    answer: str  # what is scored (rag.eval.metrics.answer_text)
    retrieved: list[int]  # chunk ids, best first, up to the eval k (empty closed book; with the whole corpus, those in the prompt)
    relevant: list[int]  # gold chunk ids in the same index (empty: no gold source)
    prompt_tokens: int
    latency_s: float  # retrieval + prompt + this question's share of its generation batch
    peak_rss_mb: float  # the process's memory high-water mark when the batch finished
    exact_match: float | None  # None for an unanswerable question
    f1: float | None
    groundedness: float | None  # None closed book, or for an answer without content words
    abstained: bool
    kind: str | None = None  # the question's kind in the QA set (name, number, date, yesno...)
    prompt_passages: int = 0  # how many of the retrieved chunks the prompt holds (the first ones)
    fold: int | None = None  # --folds: the fold whose artifacts answered (rag.qa.fold_of of the question)
    # The GPU allocator's high-water mark since this combination began answering (resident models included); None
    # without a GPU. Unlike peak_rss_mb it is reset per combination, so rows compare.
    peak_gpu_mb: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.suite, self.combination, self.qid


class PredictionLog:
    def __init__(self, path: Path):
        self.path = path
        self.predictions: list[Prediction] = []
        if path.is_file():
            self._read()
        self.done = {prediction.key for prediction in self.predictions}

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        for number, line in enumerate(lines, 1):
            try:
                self.predictions.append(Prediction(**json.loads(line)))
            except (json.JSONDecodeError, TypeError) as error:
                if number == len(lines) and not line.endswith("\n"):  # torn by a kill mid-write
                    self.path.write_text("".join(lines[:-1]), encoding="utf-8")
                    return
                raise ValueError(
                    f"{self.path}:{number}: not a prediction of this eval version ({error}); "
                    "delete the file or use another --out"
                ) from error

    def append(self, predictions: list[Prediction]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for prediction in predictions:
                handle.write(json.dumps(asdict(prediction), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the next batch starts: that is what resume relies on
        self.predictions += predictions
        self.done.update(prediction.key for prediction in predictions)
