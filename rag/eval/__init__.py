"""Evaluation: does retrieval, fine-tuning or both pay off on your documents, and at what cost?

``python -m rag.eval`` crosses retrievers {none, bm25, dense, dense-ft, hybrid}
with generators {base, fewshot, lora, soft-prompt, full}, the grid of Ovadia
et al. (2024, "Fine-tuning or retrieval? Comparing knowledge injection in LLMs")
and RAFT (Zhang et al., 2024), and scores each combination: retrieval recall,
MRR and nDCG; SQuAD exact match and F1 (Rajpurkar et al., 2016) with bootstrap
intervals (Efron, 1979); groundedness; abstention; cost; forgetting.

    >>> from rag.eval import EvalConfig, run_eval
    >>> settings = EvalConfig("corpora/vellmar-qa.jsonl", "reports/vellmar", corpus=("corpora/vellmar",), limit=8)
    >>> report = run_eval(settings.override({"retrievers": "none,bm25", "generators": "base,fewshot"}))  # doctest: +SKIP
    >>> print(report.verdict.summary[0])                                                               # doctest: +SKIP
"""

from rag.eval.config import EvalConfig, load_matrix
from rag.eval.metrics import Interval, abstained, bootstrap_ci, exact_match, groundedness, normalize_answer, token_f1
from rag.eval.plan import plan
from rag.eval.predictions import Prediction
from rag.eval.report import Report
from rag.eval.runner import run_eval
from rag.eval.throughput import ModelCost, Throughput, decode_speed, throughput
from rag.eval.variants import GENERATORS, RETRIEVERS

__all__ = [
    "GENERATORS",
    "RETRIEVERS",
    "EvalConfig",
    "Interval",
    "ModelCost",
    "Prediction",
    "Report",
    "Throughput",
    "abstained",
    "bootstrap_ci",
    "decode_speed",
    "exact_match",
    "groundedness",
    "load_matrix",
    "normalize_answer",
    "plan",
    "run_eval",
    "throughput",
    "token_f1",
]
