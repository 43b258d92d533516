"""rag.finetune: every mode on real models for a step or two, artifacts loaded back, bad input refused, resume.

Runs are as small as they can be (a couple of examples, one or two steps,
one passage per prompt) so the file stays within a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rag.config import Config
from rag.finetune import MODES, FinetuneConfig, finetune
from rag.finetune import full
from rag.finetune.__main__ import main
from rag.finetune.data import load_data
from rag.finetune.trainer import batch_loss
from rag.index import Index
from rag.embed import embed_texts, load_embedder
from rag.ingest import ingest
from rag.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from rag.models import load_generator

REPO = Path(__file__).resolve().parents[1]
VELLMAR = REPO / "corpora" / "vellmar"
VELLMAR_QA = REPO / "corpora" / "vellmar-qa.jsonl"
SQUAD = REPO.parent / "shared" / "data" / "squad" / "notre-dame-train-v1.1.json"
RUN_KEYS = {
    "mode", "wall_seconds", "trainable_params", "total_params", "artifact_bytes", "hyperparameters",
    "seed", "data_fingerprint", "metrics", "train_examples", "val_examples",
}  # fmt: skip
# The smallest generator run: 2 examples, one at a time, only the gold passage in the prompt.
TINY_GENERATOR = ["--limit", "2", "--batch-size", "1", "--passages", "1", "--max-steps", "1"]
FP32 = Config(generator_precision="fp32")  # logit comparisons: bf16 rounding would swamp small differences
FIXED_PROMPT = "Question: When was the Tidewatch Cooperative founded?\nAnswer:"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finetune") / "index"
    ingest([VELLMAR], folder)
    return folder


@pytest.fixture(scope="module")
def base_logits() -> torch.Tensor:
    return last_logits(*load_generator(FP32))


def last_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(FIXED_PROMPT, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits[0, -1]  # (vocab,): a soft prompt's virtual tokens come before, not after


def run(mode: str, out: Path, *flags: str) -> dict:
    assert main([mode, "--out", str(out), *flags]) == 0
    record = json.loads((out / "run.json").read_text())
    assert RUN_KEYS <= record.keys()
    assert record["mode"] == mode
    assert (out / "loss.png").stat().st_size > 0
    assert 0 < record["trainable_params"] <= record["total_params"]
    assert record["artifact_bytes"] > 0 and record["train_examples"] > 0 and record["val_examples"] > 0
    assert {"before", "after", "examples_per_s", "tokens_per_s"} <= record["metrics"].keys()
    assert record["metrics"]["peak_rss_mb"] > 100  # at least a model's worth
    assert ("peak_gpu_mb" in record["metrics"]) == torch.cuda.is_available()  # GPU memory where training used one
    return record


# ---------------------------------------------------------------------------- metrics


def test_metrics_match_hand_computed_values():
    ranked = [3, 7, 1, 9, 4]
    assert recall_at_k(ranked, {1, 9}, 1) == 0.0
    assert recall_at_k(ranked, {1, 9}, 3) == 0.5
    assert recall_at_k(ranked, {1, 9}, 5) == 1.0
    assert mrr_at_k(ranked, {1, 9}, 5) == pytest.approx(1 / 3)
    assert mrr_at_k(ranked, {1, 9}, 2) == 0.0
    # hits at ranks 3 and 4: (1/log2(4) + 1/log2(5)) / (1/log2(2) + 1/log2(3))
    expected = (1 / 2 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, {1, 9}, 5) == pytest.approx(expected)
    assert ndcg_at_k([5, 6], {5}, 10) == 1.0
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(ranked, set(), 5)
    with pytest.raises(ValueError, match="k must be"):
        mrr_at_k(ranked, {1}, 0)


# ---------------------------------------------------------------------------- modes


def test_embeddings_trains_loads_and_reembeds_an_index(index_dir, tmp_path):
    out = tmp_path / "embedder"
    record = run("embeddings", out, "--qa", str(VELLMAR_QA), "--index", str(index_dir), "--limit", "6", "--batch-size", "2", "--max-steps", "2")
    assert {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"} <= record["metrics"]["after"].keys()
    assert record["hyperparameters"]["lr"] == 2e-5 and record["seed"] == 0

    text = ["The cooperative keeps the lighthouse lit."]
    tuned = embed_texts(load_embedder(Config(embedder=str(out))), text, 8)
    base = embed_texts(load_embedder(Config()), text, 8)
    assert not np.allclose(tuned, base, atol=1e-4)

    summary = ingest([VELLMAR], tmp_path / "reembedded", Config(embedder=str(out)))  # python -m rag.ingest --embedder DIR
    assert summary.chunks_total > 0


def test_lora_on_squad_changes_logits_and_merges(tmp_path, base_logits):
    out = tmp_path / "lora"
    record = run("lora", out, "--qa", str(SQUAD), *TINY_GENERATOR, "--merge", "--precision", "bf16")
    assert record["hyperparameters"]["precision"] == "bf16"
    assert (out / "adapter_config.json").is_file()
    assert record["artifact_bytes"] < 10_000_000  # an adapter of a few MB, not a model
    adapted = last_logits(*load_generator(FP32, adapter=str(out)))
    assert not torch.allclose(adapted, base_logits, atol=1e-5)
    merged = last_logits(*load_generator(FP32.override({"generator": str(out / "merged")})))  # --generator DIR/merged
    assert torch.allclose(merged, adapted, atol=1e-3)


def test_prompt_tuning_on_vellmar_changes_logits(index_dir, tmp_path, base_logits):
    out = tmp_path / "soft"
    record = run("prompt-tuning", out, "--qa", str(VELLMAR_QA), "--index", str(index_dir), *TINY_GENERATOR)
    assert record["trainable_params"] == 20 * 576  # 20 virtual tokens of the 576-wide embedding
    soft = last_logits(*load_generator(FP32, adapter=str(out)))  # rag ask --soft-prompt DIR
    assert not torch.allclose(soft, base_logits, atol=1e-5)


def test_full_on_vellmar_writes_a_loadable_model(index_dir, tmp_path, base_logits):
    out = tmp_path / "full"
    record = run("full", out, "--qa", str(VELLMAR_QA), "--index", str(index_dir), *TINY_GENERATOR)
    assert record["trainable_params"] == record["total_params"]
    tuned = last_logits(*load_generator(FP32.override({"generator": str(out)})))  # rag ask --generator DIR
    assert not torch.allclose(tuned, base_logits, atol=1e-5)


def test_full_recomputes_activations_only_where_batches_run_padded_and_the_gradient_is_the_same(index_dir):
    # On a CPU each sequence runs alone (Task.parts): "auto" keeps its activations, "on" recomputes them in the backward.
    layer_runs, gradients = {}, {}
    for setting in ("auto", "on"):
        settings = FinetuneConfig("full", "unused", qa=str(VELLMAR_QA), index=str(index_dir), limit=2, passages=1,
                                  gradient_checkpointing=setting).resolved()
        task = full.build(settings, FP32, load_data(settings, FP32))
        first_layer = task.model.model.layers[0]
        runs = []
        first_layer.mlp.register_forward_pre_hook(lambda *_: runs.append(1))  # recomputing stops within the block: no post hook
        task.model.train()
        batch_loss(task, task.train[:1], backward=True)
        layer_runs[setting] = len(runs)
        gradients[setting] = first_layer.self_attn.q_proj.weight.grad
    assert layer_runs == {"auto": 2 if torch.cuda.is_available() else 1, "on": 2}
    assert torch.allclose(gradients["auto"], gradients["on"], atol=1e-6)
    # Where a batch runs padded (a GPU) "auto" recomputes, but not over the corpus the preprompt objective prefills
    # into a cache, which a checkpointed layer drops: "on" is refused there.
    padded = dataclasses.replace(task, parts=None)
    automatic = dataclasses.replace(settings, gradient_checkpointing="auto")
    assert full.recomputes_activations(automatic, padded)
    assert not full.recomputes_activations(dataclasses.replace(automatic, objective="preprompt"), padded)
    with pytest.raises(ValueError, match="gradient-checkpointing on recomputes each layer without the cache"):
        dataclasses.replace(settings, objective="preprompt").resolved()
    with pytest.raises(ValueError, match="gradient-checkpointing"):
        FinetuneConfig("full", "unused", gradient_checkpointing="yes").resolved()


def test_lora_unsupervised_trains_on_the_index_text(index_dir, tmp_path, base_logits):
    out = tmp_path / "lora-kb"
    record = run("lora", out, "--objective", "unsupervised", "--index", str(index_dir), "--limit", "1", "--max-steps", "1")
    assert record["data"].startswith("index")
    assert not torch.allclose(last_logits(*load_generator(FP32, adapter=str(out))), base_logits, atol=1e-5)


def test_synthetic_pairs_are_saved_and_trained_on(index_dir, tmp_path):
    out = tmp_path / "synthetic"
    run("embeddings", out, "--synthetic", "--index", str(index_dir), "--limit", "3", "--batch-size", "2", "--max-steps", "1")
    rows = [json.loads(line) for line in (out / "data" / "synthetic-pairs.jsonl").read_text().splitlines()]
    chunks = {chunk.text for chunk in Index.open(index_dir).chunks()}
    questions = [row["query"].lower() for row in rows]
    assert rows and all(row["positive"] in chunks for row in rows)  # each question is about a real chunk
    assert len(set(questions)) == len(questions) and all(q.endswith("?") for q in questions)
    assert not any(q.rstrip("?") in row["positive"].lower() for q, row in zip(questions, rows))  # not copied out


# ---------------------------------------------------------------------------- resume and bad input


def test_an_interrupted_run_resumes_to_the_same_weights_and_losses(index_dir, tmp_path, monkeypatch):
    from rag.finetune import trainer

    flags = ["--qa", str(VELLMAR_QA), "--index", str(index_dir), "--limit", "8", "--batch-size", "2", "--max-steps", "4"]
    straight = run("embeddings", tmp_path / "straight", *flags)

    real = trainer.lr_factor

    def interrupt_at_step_3(step: int, total: int, warmup: int) -> float:
        if step == 2:
            raise KeyboardInterrupt  # Ctrl-C before the third optimizer step
        return real(step, total, warmup)

    monkeypatch.setattr(trainer, "lr_factor", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        main(["embeddings", "--out", str(tmp_path / "resumed"), *flags])
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step-000002"]
    resumed = run("embeddings", tmp_path / "resumed", *flags, "--resume")
    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == 4
    assert resumed["train_losses"] == pytest.approx(straight["train_losses"], abs=1e-5)
    assert [step for step, _ in resumed["val_losses"]] == [step for step, _ in straight["val_losses"]]
    assert [loss for _, loss in resumed["val_losses"]] == pytest.approx([loss for _, loss in straight["val_losses"]], abs=1e-5)
    weights = [load_embedder(Config(embedder=str(tmp_path / name)), for_training=True).state_dict() for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.allclose(weights[0][name], weights[1][name], atol=1e-6) for name in weights[0])


def test_malformed_pairs_line_is_named(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q1", "positive": "p1"}\n{"query": "q2"}\n')
    with pytest.raises(ValueError, match=r"pairs\.jsonl:2: .*\"positive\""):
        finetune(FinetuneConfig("embeddings", str(tmp_path / "out"), pairs=str(pairs)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(mode="bogus", qa=str(SQUAD)), "unknown mode 'bogus'; choose one of embeddings, lora, prompt-tuning, full"),
        (dict(mode="embeddings", synthetic=True), "--synthetic .* pass --index"),
        (dict(mode="embeddings"), "no training data"),
        (dict(mode="lora", qa=str(VELLMAR_QA)), "no context passage .* pass --index"),
        (dict(mode="lora", qa=str(SQUAD), objective="rote"), "unknown objective 'rote'"),
        (dict(mode="embeddings", qa=str(SQUAD), pairs=str(SQUAD)), "give one data source"),
        (dict(mode="lora", qa=str(SQUAD), lr=1e-4, lr_sweep=(1e-4, 3e-4)), "the sweep chooses the rate; give one of them"),
        (dict(mode="lora", qa=str(SQUAD), lr_sweep=(1e-4, 0.0)), "--lr-sweep takes distinct positive rates"),
        (dict(mode="lora", qa=str(SQUAD), sweep_steps=5), "give --lr-sweep too"),
        (dict(mode="lora", qa=str(SQUAD), split_by="paragraph"), "unknown --split-by 'paragraph'; choose one of question, document"),
        (dict(mode="lora", qa=str(SQUAD), objective="closed-book", cloze=-1), "cloze must be at least 0"),
        (dict(mode="lora", qa=str(SQUAD), precision="fp16"), "--precision must be auto, bf16 or fp32, got 'fp16'"),
        (dict(mode="embeddings", qa=str(SQUAD), unanswerable=True), "--unanswerable trains a generator"),
        (dict(mode="lora", qa=str(SQUAD), objective="unsupervised", unanswerable=True), "the supervised, closed-book or preprompt objective"),
        (dict(mode="lora", qa=str(SQUAD), distractors_from="dense"), "unknown --distractors-from 'dense'; choose one of random, bm25"),
        (dict(mode="lora", qa=str(SQUAD), objective="closed-book", distractors_from="bm25"), "this run has none .*closed-book objective"),
    ],
)
def test_bad_settings_are_refused(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        finetune(FinetuneConfig(out=str(tmp_path / "out"), **settings))


def test_pairs_without_answers_are_refused_for_supervised_generator_runs(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"question {i}?", "positive": f"passage {i}"}) + "\n" for i in range(12)))
    with pytest.raises(ValueError, match="needs reference answers"):
        finetune(FinetuneConfig("lora", str(tmp_path / "out"), pairs=str(pairs)))


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        finetune(FinetuneConfig("embeddings", str(out), qa=str(SQUAD)))


def test_cli_reports_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rag.finetune", "nonsense", "--out", str(tmp_path / "o"), "--qa", str(SQUAD)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: unknown mode 'nonsense'; choose one of {', '.join(MODES)}"


class Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_the_run_keeps_the_weights_of_its_best_validation_not_its_last_step(tmp_path):
    from rag.finetune.trainer import Task, train

    # Training pulls w towards 10, validation wants it at 1: the clipped gradient moves w by about lr each
    # step (0.6, 1.2, 1.6, 1.8 under the warm-up and linear decay), so validation is best after step 2.
    model = Scalar()

    def loss(batch):
        return torch.stack([(model.w - target) ** 2 for target in batch]).mean(), len(batch)

    task = Task(model, train=[10.0] * 4, val=[1.0], loss=loss, save=lambda folder: None)
    settings = FinetuneConfig("lora", str(tmp_path), lr=0.6, epochs=1, batch_size=1, validate_every=1, weight_decay=0.0).resolved()
    state = train(task, settings, tmp_path / "checkpoints", "data")
    steps, losses = zip(*state.val_losses)
    assert steps == (0, 1, 2, 3, 4) and min(losses[1:]) == losses[2] < losses[4]
    assert state.step == 4 and state.best_step == 2 and state.best_val_loss == losses[2]
    assert model.w.item() == pytest.approx(1 + math.sqrt(losses[2]))  # the step-2 weights are back, not step 4's (~1.8)
    assert (tmp_path / "checkpoints" / "best" / "trainable.pt").is_file()


def test_the_validation_loss_is_the_mean_over_the_validation_tokens_whatever_the_batch_size():
    """Runs trained with different batch sizes compare on it: each batch's token mean weighted by its examples moved
    with how answers of different lengths fell into batches (fold 2's untrained closed-book loss: 5.233 in batches of
    4, 5.399 in batches of 2)."""
    from rag.finetune.causal import answered, causal_task, next_token_loss
    from rag.finetune.trainer import validation_loss

    model, tokenizer = load_generator(FP32)
    prompt = tokenizer("Question: who founded the cooperative?\nAnswer:")["input_ids"]
    answers = ["Ada", "Ada Marrow and Benedek Hollis, in the spring of 1911", "1911", "in the old harbour of Vellmar"]
    val = [answered(prompt, answer, tokenizer) for answer in answers]
    task = causal_task(model, tokenizer, ([], val), save=None)
    token_losses = []
    with torch.no_grad():
        for sequence in val:
            logits = model(torch.tensor([sequence.input_ids])).logits
            labels = torch.tensor([sequence.labels])
            scored = sum(label != -100 for label in sequence.labels[1:])
            token_losses.append((next_token_loss(logits, labels).item() * scored, scored))
    by_hand = sum(loss for loss, _ in token_losses) / sum(count for _, count in token_losses)
    assert [validation_loss(task, size) for size in (1, 2, 3, 4)] == pytest.approx([by_hand] * 4, rel=1e-5)


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_loss_is_computed_in_the_training_precision_and_the_trained_weights_stay_fp32(tmp_path, precision, dtype):
    from rag.finetune.trainer import Task, train

    layer = torch.nn.Linear(4, 1)
    initial = layer.weight.detach().clone()
    computed = []  # the dtype of the layer's output at every training and validation forward pass

    def loss(batch):
        output = layer(torch.ones(len(batch), 4))
        computed.append(output.dtype)
        return ((output.float().squeeze(1) - torch.tensor(batch)) ** 2).mean(), len(batch)

    task = Task(layer, train=[1.0] * 4, val=[0.0], loss=loss, save=lambda folder: None)
    settings = FinetuneConfig("lora", str(tmp_path), epochs=1, batch_size=2, precision=precision).resolved()
    state = train(task, settings, tmp_path / "checkpoints", "data")
    assert state.step == 2 and len(computed) == 2 + 2  # two steps, validation before and after
    assert set(computed) == {dtype}
    assert layer.weight.dtype == torch.float32 and not torch.equal(layer.weight, initial)  # fp32 weights, updated


@pytest.mark.parametrize(("precision", "frozen"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_lora_holds_its_frozen_weights_in_the_training_precision_and_trains_fp32_ones(tmp_path, precision, frozen):
    from rag.finetune.data import load_data

    settings = FinetuneConfig("lora", str(tmp_path), qa=str(SQUAD), limit=2, passages=1, precision=precision).resolved()
    task = MODES["lora"](settings, FP32, load_data(settings, FP32))
    assert {p.dtype for p in task.model.parameters() if not p.requires_grad} == {frozen}
    assert {p.dtype for p in task.model.parameters() if p.requires_grad} == {torch.float32}


def test_a_checkpoint_resumes_only_in_the_precision_it_was_trained_in(tmp_path):
    from rag.finetune.trainer import train

    settings = FinetuneConfig("lora", str(tmp_path), lr=0.6, batch_size=1, max_steps=2, weight_decay=0.0).resolved()
    train(scalar_task(settings), settings, tmp_path / "checkpoints", "data")
    extended = dataclasses.replace(settings, max_steps=3, resume=True)
    with pytest.raises(ValueError, match="trained with --precision fp32, and this run's is bf16; resume with --precision fp32"):
        train(scalar_task(settings), dataclasses.replace(extended, precision="bf16"), tmp_path / "checkpoints", "data")
    assert train(scalar_task(settings), extended, tmp_path / "checkpoints", "data").step == 3


# ---------------------------------------------------------------------------- learning-rate sweep


def scalar_task(settings: FinetuneConfig):
    """A fresh Scalar that training pulls towards 10 and validation wants at 1 (as in the test above)."""
    from rag.finetune.trainer import Task

    model = Scalar()

    def loss(batch):
        return torch.stack([(model.w - target) ** 2 for target in batch]).mean(), len(batch)

    return Task(model, train=[10.0] * 4, val=[1.0], loss=loss, save=lambda folder: None)


def test_the_sweep_keeps_the_rate_of_the_lowest_validation_loss_and_resumes_from_its_trials(tmp_path, caplog):
    from rag.finetune.sweep import chosen_rate, sweep_learning_rates
    from rag.finetune.trainer import train

    # w moves by about lr a step: 0.01 barely leaves 0 (loss ~0.94), 0.6 passes 1 at step 2 (~0.04), 5 overshoots.
    settings = FinetuneConfig("lora", str(tmp_path), lr_sweep=(0.01, 0.6, 5.0), epochs=1, batch_size=1, validate_every=1,
                              weight_decay=0.0).resolved()
    trials = sweep_learning_rates(settings, scalar_task, "data", tmp_path / "checkpoints")
    assert "widen --lr-sweep" not in caplog.text  # 0.6 has a worse rate on both sides
    assert [t.lr for t in trials] == [0.01, 0.6, 5.0] and all(t.steps == 4 for t in trials)
    assert trials[1].val_loss < min(trials[0].val_loss, trials[2].val_loss) and trials[1].kept_step == 2
    assert chosen_rate(trials) == 0.6
    folders = sorted((tmp_path / "lr-sweep").iterdir())
    assert [f.name for f in folders] == ["lr-0.01", "lr-0.6", "lr-5"]
    assert all([p.name for p in f.iterdir()] == ["trial.json"] for f in folders)  # checkpoints deleted once finished

    def no_training(trial_settings):
        raise AssertionError("a finished trial was trained again")

    assert sweep_learning_rates(settings, no_training, "data", tmp_path / "checkpoints") == trials
    # each trial trained the whole budget: the best one's checkpoints are the run's, which resumes without a step
    resumed = scalar_task(settings)
    state = train(resumed, dataclasses.replace(settings, lr=0.6, resume=True), tmp_path / "checkpoints", "data")
    assert (state.resumed_from, state.best_step, round(state.best_val_loss, 4)) == (4, 2, trials[1].val_loss)
    assert resumed.model.w.item() == pytest.approx(1.0, abs=0.25)  # the kept step's weights, not the last step's (1.8)
    short = dataclasses.replace(settings, sweep_steps=2, out=str(tmp_path / "short"))
    assert [t.steps for t in sweep_learning_rates(short, scalar_task, "data", tmp_path / "short" / "checkpoints")] == [2, 2, 2]
    assert not (tmp_path / "short" / "checkpoints").exists()  # a shorter trial is not the run: it trains anew
    low = dataclasses.replace(settings, lr_sweep=(0.01, 0.1), out=str(tmp_path / "low"))
    assert chosen_rate(sweep_learning_rates(low, scalar_task, "data", tmp_path / "low" / "checkpoints")) == 0.1
    assert "0.1, the lowest validation loss, is the grid's highest rate" in caplog.text  # 0.6 would do better
    # Widened on a finished run: 0.6, trained now, beats 0.1, whose checkpoints the run holds; the run must resume
    # from 0.6's, not finish 0.1's weights under 0.6's name.
    wider = dataclasses.replace(low, lr_sweep=(0.01, 0.1, 0.6))
    widened = sweep_learning_rates(wider, scalar_task, "data", tmp_path / "low" / "checkpoints")
    assert chosen_rate(widened) == 0.6
    state = train(scalar_task(wider), dataclasses.replace(wider, lr=0.6, resume=True), tmp_path / "low" / "checkpoints", "data")
    assert round(state.best_val_loss, 4) == widened[2].val_loss < widened[1].val_loss


def test_a_swept_run_trains_with_the_chosen_rate_and_records_every_trial(tmp_path):
    out = tmp_path / "lora"
    record = run("lora", out, "--qa", str(SQUAD), *TINY_GENERATOR, "--lr-sweep", "1e-5,3e-2", "--sweep-steps", "1")
    trials = record["lr_sweep"]
    assert [t["lr"] for t in trials] == [1e-5, 3e-2] and all(t["steps"] == 1 for t in trials)
    assert trials[0]["val_loss"] != trials[1]["val_loss"]
    assert record["hyperparameters"]["lr"] == min(trials, key=lambda t: t["val_loss"])["lr"]
    assert sorted(p.name for p in (out / "lr-sweep").iterdir()) == ["lr-0.03", "lr-1e-05"]  # kept in the artifact folder


def test_a_sweep_of_whole_budget_trials_keeps_the_best_one_as_the_artifact_without_training_it_again(tmp_path):
    from safetensors.torch import load_file

    swept = run("lora", tmp_path / "swept", "--qa", str(SQUAD), *TINY_GENERATOR, "--lr-sweep", "1e-5,3e-2")
    assert swept["resumed_from_step"] == swept["steps"] == 1  # the best trial's last step: no step trained again
    plain = run("lora", tmp_path / "plain", "--qa", str(SQUAD), *TINY_GENERATOR, "--lr", f"{swept['hyperparameters']['lr']:g}")
    assert swept["metrics"]["after"] == plain["metrics"]["after"]
    weights = [load_file(tmp_path / name / "adapter_model.safetensors") for name in ("swept", "plain")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
