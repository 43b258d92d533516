"""bench/bench.py runs end to end at its smallest sizes and writes every figure the issue asks for, with its unit.

Not a timing test: the figures' values depend on the machine. It checks that each section still runs
against the library it measures (a changed signature breaks the bench, not the suite, otherwise) and
that every ANN latency has its recall beside it.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

SMALLEST = ["--quick", "--min-chunks", "20", "--precision-sample", "4", "--ann-size", "1500", "--ann-queries", "20",
            "--queries", "3", "--gen-prompts", "2", "--max-new-tokens", "2", "--train-steps", "1", "--train-batch", "1", "--set", "k=1"]


def test_every_section_writes_its_figures_with_units(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "bench/bench.py", *SMALLEST, "--json", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["machine"]["cpus"] and figures["ingest"]["overhead_pct"]["unit"] == "%"
    assert figures["ingest"]["chunks"]["value"] >= 20 and figures["langchain"]["ours_over_langchain"]["value"] > 0
    ann = figures["ann"]
    assert {row["index_type"]["value"] for row in ann} == {"flat", "hnsw", "ivf"}
    assert all(0 <= row["recall_at_10"]["value"] <= 1 and row["p50_ms"]["unit"] == "ms" for row in ann)
    assert next(row for row in ann if row["index_type"]["value"] == "flat")["recall_at_10"]["value"] == 1.0  # exact is its own reference
    arms = {(row["prompts"]["value"], row["arm"]["value"]) for row in figures["eval_path"]}
    assert arms == {(kind, arm) for kind in ("rag", "fewshot") for arm in ("naive-passages", "eval-passages", "eval-sentences")}
    assert all(row["speedup"]["unit"] == "x" and row["qps"]["value"] > 0 for row in figures["eval_path"])
    assert {row["prompts"]["value"] for row in figures["prefix_reuse"]} == {"rag", "fewshot", "corpus"}
    corpus = next(row for row in figures["prefix_reuse"] if row["prompts"]["value"] == "corpus")
    assert corpus["shared_prefix_tokens"]["value"] > 0.9 * corpus["mean_prompt_tokens"]["value"]  # all but the question is kept
    assert any(name.startswith("eval path >= 3x") for name in figures["goals"]) and len(figures["goals"]) == 4
    training = {(row["precision"]["value"], row["lora_dropout"]["value"]): row for row in figures["training"]}
    assert training.keys() == {("fp32", 0.0), ("bf16", 0.0), ("bf16", 0.05)}  # the default dropout, then the other one
    step_s = {arm: row["step_s"]["value"] for arm, row in training.items()}
    for arm in (("bf16", 0.0), ("bf16", 0.05)):  # fp32 is the reference
        assert training[arm]["speedup"]["value"] == pytest.approx(step_s["fp32", 0.0] / step_s[arm], abs=0.02)
    assert all(row["step_s"]["unit"] == "s" and row["tokens_per_s"]["value"] > 0 for row in training.values())
    # The steps are timed in training mode, as the trainer runs them: with dropout on, every adapted projection draws a
    # mask (none drawn would mean eval mode, which skips a fifth of a CPU step's work).
    masks = {arm: row["dropout_masks"]["value"] for arm, row in training.items()}
    assert masks["fp32", 0.0] == masks["bf16", 0.0] == 0 and masks["bf16", 0.05] > 0
    # bf16 autocast computes the same loss to within rounding, on the same validation prompt; dropout is off in validation
    val_loss = {arm: row["val_loss"]["value"] for arm, row in training.items()}
    assert abs(val_loss["bf16", 0.0] - val_loss["fp32", 0.0]) < 0.1 * val_loss["fp32", 0.0]
    assert val_loss["bf16", 0.05] == pytest.approx(val_loss["bf16", 0.0], abs=1e-4)
