"""rag.eval: metrics against hand-computed values, the report files, resume, and clear errors.

Real models, tiny runs: 3 questions, short prompts (context_tokens 512, 2
passages) and 8 new tokens.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import CORPUS, QA_FILE, ROOT

from rag import Config, Retriever
from rag.eval import EvalConfig, plan, run_eval, throughput
from rag.eval.plan import ranking_only
from rag.eval.dataset import gold_chunk_ids, select, write_qa_corpus
from rag.eval.config import load_matrix
from rag.eval.metrics import (
    abstained, bootstrap_ci, exact_match, groundedness, normalize_answer, paired_difference, token_f1,
)
from rag.generate import Generator
from rag.index import Index
from rag.prompt import answer_text
from rag.qa import QAItem, load_qa

TINY = {"context_tokens": 512, "k": 2, "max_new_tokens": 8}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two cores shared with other jobs: two OpenMP threads per process spin against each other (~10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def settings(out, **values) -> EvalConfig:
    return EvalConfig(str(QA_FILE), str(out), rag=Config().override(TINY)).override(values)


# ---------------------------------------------------------------------------- metrics


def test_squad_normalization_exact_match_and_f1():
    assert normalize_answer("  The Cat's   hat, a RED one! ") == "cats hat red one"
    assert exact_match("the Eiffel Tower.", ["Paris", "Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    # "in 1889" vs "1889": 1 common token, precision 1/2, recall 1 -> F1 2/3
    assert token_f1("in 1889", ["1889"]) == pytest.approx(2 / 3)
    # best over golds: vs "Maren Quillfeather" P=1/3 R=1/2 -> 0.4; vs "Maren" P=1/3 R=1 -> 0.5
    assert token_f1("Maren the chair Smith", ["Maren Quillfeather", "Maren"]) == pytest.approx(0.5)
    assert token_f1("nothing shared", ["1889"]) == 0.0
    with pytest.raises(ValueError):
        exact_match("x", [])


def test_answer_text_groundedness_and_abstention():
    assert answer_text("\n9 October 1891 [1]\n\nQuestion: next?") == "9 October 1891"
    # content words: maren, quillfeather, chaired (stop words "was", "the" ignored); 2 of 3 in the context
    assert groundedness("Maren Quillfeather chaired the", ["Maren Quillfeather was the first chair."]) == pytest.approx(2 / 3)
    assert groundedness("Paris", []) is None and groundedness("the of", ["x"]) is None
    assert abstained("I don't know.") and abstained("That is not mentioned in the context.")
    assert abstained("I cannot answer that") and not abstained("I know: Paris")


def test_bootstrap_interval_contains_the_mean_and_is_seeded():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    first, again, other = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=4)
    assert first.mean == pytest.approx(0.7) and first.low <= 0.7 <= first.high
    assert first == again and 0 < first.low < first.high < 1
    assert other != first
    assert bootstrap_ci([0.5] * 5) == bootstrap_ci([0.5] * 5, seed=9)  # no spread: (0.5, 0.5, 0.5)
    assert bootstrap_ci([]) is None


def test_paired_difference_sees_a_consistent_gain_that_unpaired_intervals_call_noise():
    varied = [i / 10 for i in range(11)]  # per-question scores spread over 0..1
    better = {f"q{i}": score for i, score in enumerate(varied)}
    worse = {f"q{i}": score - 0.1 for i, score in enumerate(varied)}  # 0.1 lower on every question
    unpaired_better, unpaired_worse = bootstrap_ci(list(better.values())), bootstrap_ci(list(worse.values()))
    assert unpaired_worse.mean > unpaired_better.low  # an unpaired comparison calls it noise
    difference = paired_difference(better, worse)
    assert difference.mean == pytest.approx(0.1) and difference.low == pytest.approx(0.1)  # paired: a sure gain
    assert paired_difference({"q1": 1.0}, {"q2": 0.0}) is None  # no question in common


# ---------------------------------------------------------------------------- data and matrix


def test_split_sample_and_qids_are_stable():
    items = load_qa(QA_FILE)
    val, train = select(items, "val"), select(items, "train")
    assert len(val) + len(train) == len(items) and not {q.qid for q in val} & {q.qid for q in train}
    sample = select(items, "val", limit=4, seed=1)
    assert sample == select(items, "val", limit=4, seed=1) and {q.qid for q in sample} <= {q.qid for q in val}
    assert select(items)[12].qid == "q00012"
    for seed in range(5):  # 31 of 312 questions are unanswerable: a plain sample of 6 often draws none
        drawn = select(items, limit=6, seed=seed)
        assert len(drawn) == 6 and sum(not q.item.answers for q in drawn) == 1


def test_gold_chunks_hold_the_answer_in_the_gold_file(vellmar_index):
    questions = select(load_qa(QA_FILE), limit=None)
    gold = gold_chunk_ids(Index.open(vellmar_index), questions).relevant
    index = Index.open(vellmar_index)
    first = questions[0]  # "On what date was the Tidewatch Cooperative set up?" -> about.md, "9 October 1891"
    chunks = index.chunks(gold[first.qid])
    assert all(c.source.endswith("/about.md") and "9 october 1891" in c.text.lower() for c in chunks)
    unanswerable = [q.qid for q in questions if not q.item.answers]
    assert unanswerable and not set(unanswerable) & set(gold)


def test_corpus_from_qa_writes_one_file_per_paragraph(tmp_path):
    items = [QAItem("q1", ["a"], "Title", None, "Para one."), QAItem("q2", ["b"], "Title", None, "Para one."),
             QAItem("q3", ["c"], "Title", None, "Para two.")]
    renamed = write_qa_corpus(items, tmp_path)
    assert [i.source for i in renamed] == ["p0001.txt", "p0001.txt", "p0002.txt"]
    assert (tmp_path / "p0002.txt").read_text() == "Para two."


def test_default_plan_skips_what_has_no_artifact(tmp_path):
    retrievers, generators, skipped = plan(EvalConfig(str(QA_FILE), str(tmp_path), corpus=(str(CORPUS),)))
    assert [r.name for r in retrievers] == ["none", "bm25", "dense", "hybrid", "corpus"]
    assert [g.name for g in generators] == ["base", "fewshot", "sentences"]
    reasons = " ".join(s.reason for s in skipped)
    assert {s.variant for s in skipped} == {
        "retriever dense-ft", "generator lora", "generator soft-prompt", "generator full", "generator lora-cb", "generator full-cb",
        "generator scratch", "generator lora-pp", "generator full-pp",
    }
    flags = ("--embedder", "--adapter", "--soft-prompt", "--generator", "--closed-book-adapter", "--closed-book-generator", "--scratch-generator",
             "--preprompt-adapter", "--preprompt-generator")
    assert all(flag in reasons for flag in flags)


def test_matrix_file_toml_and_yaml(tmp_path):
    (tmp_path / "m.toml").write_text('retrievers = ["none", "bm25"]\ngenerators = "base"\nlimit = 5\n')
    (tmp_path / "m.yaml").write_text("retrievers: [none, bm25]\ngenerators: base\nlimit: 5\n")
    toml, yaml = (EvalConfig("q", "o").override(load_matrix(tmp_path / name)) for name in ("m.toml", "m.yaml"))
    assert toml == yaml and toml.retrievers == ("none", "bm25") and toml.generators == ("base",) and toml.limit == 5
    (tmp_path / "bad.toml").write_text("retreivers = []\n")
    with pytest.raises(ValueError, match="unknown eval setting.*retreivers.*valid"):
        EvalConfig("q", "o").override(load_matrix(tmp_path / "bad.toml"))


# ---------------------------------------------------------------------------- clear errors


def test_malformed_qa_line_names_file_and_line(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "ok?", "answers": ["yes"]}\n{"question": "broken", "answers": [1]}\n')
    with pytest.raises(ValueError, match=f"{qa}:2"):
        run_eval(settings(tmp_path / "out", qa=str(qa), retrievers="none", generators="base"))


def test_missing_or_wrong_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="lora needs --adapter"):
        plan(settings(tmp_path, generators="base,lora"))
    with pytest.raises(FileNotFoundError, match=f"--adapter {tmp_path / 'nope'}: no such folder"):
        plan(settings(tmp_path, generators="lora", adapter=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="--generator .*no config.json"):
        plan(settings(tmp_path, generator=str(tmp_path)))  # given explicitly: an error even in default mode
    with pytest.raises(ValueError, match="unknown retriever.*colbert.*choose from none, bm25, dense, dense-ft, hybrid"):
        plan(settings(tmp_path, retrievers="colbert"))
    with pytest.raises(ValueError, match="--ranking-only none: ranks nothing.*choose among bm25, dense, dense-ft, hybrid"):
        ranking_only(settings(tmp_path, corpus=(str(CORPUS),), ranking_only="bm25,none"), [])
    with pytest.raises(ValueError, match="--embedder"):  # dense-ft needs its fine-tuned embedder
        ranking_only(settings(tmp_path, corpus=(str(CORPUS),), ranking_only="dense-ft"), [])


def test_cli_error_is_one_line_with_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "rag.eval", "--qa", str(QA_FILE), "--out", str(tmp_path), "--generators", "lora"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert done.returncode == 2 and "--adapter" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, vellmar_index):
    out = tmp_path_factory.mktemp("eval")
    config = settings(out, index=str(vellmar_index), retrievers="none,bm25", generators="base,fewshot", limit=3,
                      ranking_only="bm25,dense")
    return config, run_eval(config, progress=False)


def test_report_files_and_contents(small_run):
    config, report = small_run
    out = config.out
    lines = open(f"{out}/predictions.jsonl").read().splitlines()
    assert len(lines) == 3 * 4 and {json.loads(line)["combination"] for line in lines} == {
        "none+base", "none+fewshot", "bm25+base", "bm25+fewshot"}
    row = json.loads(lines[-1])
    assert set(row) >= {"retrieved", "prompt_tokens", "answer", "exact_match", "f1", "latency_s"}
    saved = json.load(open(f"{out}/report.json"))
    assert [c["combination"] for c in saved["combinations"]] == ["none+base", "none+fewshot", "bm25+base", "bm25+fewshot"]
    bm25 = next(c for c in report.combinations if c.combination == "bm25+base")
    closed = next(c for c in report.combinations if c.combination == "none+base")
    assert bm25.recall and len(bm25.recall) == 10 and closed.recall is None and bm25.prompt_tokens > closed.prompt_tokens
    assert saved["verdict"]["best"] in saved["verdict"]["within_noise"] and saved["verdict"]["cheapest"]
    markdown = open(f"{out}/report.md").read()
    assert "| bm25+fewshot |" in markdown and "## Verdict" in markdown and "**" in markdown
    assert "Retrieval vs closed book" in markdown and "paired 95% CI" in markdown
    for chart in ("quality_vs_cost.png", "recall_at_k.png"):
        assert open(f"{out}/{chart}", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_every_number_in_report_json_is_recomputed_from_predictions(small_run):
    config, _ = small_run
    rows = [json.loads(line) for line in open(f"{config.out}/predictions.jsonl")]
    saved = json.load(open(f"{config.out}/report.json"))

    def mean(values):
        return sum(values) / len(values) if values else None

    def first_relevant_rank(row, k):
        return next((rank for rank, cid in enumerate(row["retrieved"][:k], 1) if cid in row["relevant"]), None)

    def dcg(row, k):
        return sum(1 / math.log2(rank + 1) for rank, cid in enumerate(row["retrieved"][:k], 1) if cid in row["relevant"])

    k = config.k
    assert saved["questions"] == len({r["qid"] for r in rows if r["suite"] == "qa"})
    for combo in saved["combinations"]:
        mine = [r for r in rows if r["suite"] == "qa" and r["combination"] == combo["combination"]]
        answerable = [r for r in mine if r["answers"]]
        gold = [r for r in mine if r["relevant"]]
        latencies = sorted(r["latency_s"] for r in mine)
        assert combo["questions"] == len(mine) and combo["answerable"] == len(answerable)
        assert combo["f1"]["mean"] == pytest.approx(mean([r["f1"] for r in answerable]))
        assert combo["exact_match"]["mean"] == pytest.approx(mean([r["exact_match"] for r in answerable]))
        assert combo["f1"]["low"] <= combo["f1"]["mean"] <= combo["f1"]["high"]
        if combo["retriever"] == "none":
            assert combo["recall"] is None and combo["mrr"] is None and combo["gold_in_prompt"] is None
        else:
            for cutoff in range(1, k + 1):
                by_hand = mean([len(set(r["retrieved"][:cutoff]) & set(r["relevant"])) / len(set(r["relevant"])) for r in gold])
                assert combo["recall"][cutoff - 1] == pytest.approx(by_hand)
            assert combo["mrr"] == pytest.approx(mean([1 / rank if (rank := first_relevant_rank(r, k)) else 0.0 for r in gold]))
            ideal = [sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(r["relevant"])) + 1)) for r in gold]
            assert combo["ndcg"] == pytest.approx(mean([dcg(r, k) / best for r, best in zip(gold, ideal)]))
            # The prompt holds the first prompt_passages of the ranking: at most the rag k, and fewer when the budget cuts.
            assert all(r["prompt_passages"] <= min(config.rag.k, len(r["retrieved"])) for r in mine) and any(r["prompt_passages"] for r in mine)
            assert combo["gold_in_prompt"] == pytest.approx(mean([float(bool(set(r["retrieved"][: r["prompt_passages"]]) & set(r["relevant"]))) for r in gold]))
        assert combo["groundedness"] == pytest.approx(mean([r["groundedness"] for r in mine if r["groundedness"] is not None]))
        assert combo["abstention"] == pytest.approx(mean([float(r["abstained"]) for r in mine if not r["answers"]]))
        assert combo["false_abstention"] == pytest.approx(mean([float(r["abstained"]) for r in answerable]))
        assert combo["prompt_tokens"] == pytest.approx(mean([r["prompt_tokens"] for r in mine]))
        assert combo["latency_p50_s"] == pytest.approx(latencies[len(latencies) // 2] if len(latencies) % 2 else
                                                       (latencies[len(latencies) // 2 - 1] + latencies[len(latencies) // 2]) / 2)
        assert combo["questions_per_s"] == pytest.approx(len(mine) / sum(latencies))
        assert combo["peak_rss_mb"] == max(r["peak_rss_mb"] for r in mine)
        # The GPU allocator's peak where a GPU answered (reset per combination), else none recorded.
        gpu_peaks = [r["peak_gpu_mb"] for r in mine]
        assert all((peak is not None) == torch.cuda.is_available() for peak in gpu_peaks)
        assert combo["peak_gpu_mb"] == (max(gpu_peaks) if torch.cuda.is_available() else None)
    best = max(saved["combinations"], key=lambda c: c["f1"]["mean"])
    assert saved["verdict"]["best"] == best["combination"]


def test_ranking_only_retrievers_are_scored_on_their_ranking_without_answers(small_run, vellmar_index, embedder):
    config, report = small_run
    rows = [json.loads(line) for line in open(f"{config.out}/predictions.jsonl")]
    assert rows and not any(row["retriever"] == "dense" for row in rows)  # no answer was made with it
    assert [(s.retriever, s.answered) for s in report.retrieval] == [("bm25", True), ("dense", False)]
    scores = {s.retriever: s for s in report.retrieval}
    # BM25 was also answered with: its ranking scored apart is the one its answers recorded.
    answered = next(c for c in report.combinations if c.combination == "bm25+base")
    assert scores["bm25"].recall == pytest.approx(answered.recall) and scores["bm25"].mrr.mean == pytest.approx(answered.mrr)
    # dense, by hand: the same questions searched here, against their gold chunks.
    index = Index.open(vellmar_index)
    questions = select(load_qa(QA_FILE), limit=3)
    gold = gold_chunk_ids(index, questions).relevant
    found = Retriever(index, config.rag, embedder=embedder).search([q.item.question for q in questions], "dense", k=config.k)
    ranked = {q.qid: [hit.chunk_id for hit in hits] for q, hits in zip(questions, found) if gold.get(q.qid)}
    assert ranked and scores["dense"].questions == len(ranked)
    for cutoff in (1, config.k):
        by_hand = sum(len(set(ids[:cutoff]) & set(gold[qid])) / len(set(gold[qid])) for qid, ids in ranked.items()) / len(ranked)
        assert scores["dense"].recall[cutoff - 1] == pytest.approx(by_hand)
    reciprocal = [next((1 / rank for rank, cid in enumerate(ids, 1) if cid in gold[qid]), 0.0) for qid, ids in ranked.items()]
    assert scores["dense"].mrr.mean == pytest.approx(sum(reciprocal) / len(reciprocal))
    markdown = open(f"{config.out}/report.md").read()
    assert "## Retrieval" in markdown and "| dense | no | " in markdown and "| bm25 | yes | " in markdown


def test_resume_generates_only_the_missing_answers(small_run, tmp_path, monkeypatch):
    config, report = small_run
    out = tmp_path / "resumed"
    out.mkdir()
    lines = open(f"{config.out}/predictions.jsonl").read().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines[:5]) + lines[5][:40])  # killed mid-write
    (out / "settings.json").write_text(open(f"{config.out}/settings.json").read())  # written before the first answer
    generated = []
    real = Generator.generate
    monkeypatch.setattr(Generator, "generate", lambda self, prompts: generated.extend(prompts) or real(self, prompts))
    resumed = run_eval(config.override({"out": str(out)}), progress=False)
    assert len(generated) == 12 - 5
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 12
    assert [c.combination for c in resumed.combinations] == [c.combination for c in report.combinations]

    monkeypatch.setattr(Generator, "load", lambda *a, **k: pytest.fail("nothing left to generate"))
    run_eval(config.override({"out": str(out)}), progress=False)
    with pytest.raises(ValueError, match="other k"):
        run_eval(config.override({"out": str(out), "k": 5}), progress=False)


def test_resume_refuses_answers_made_from_another_qa_file(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(QA_FILE.read_text())
    config = settings(tmp_path / "out", qa=str(qa), retrievers="none", generators="base", limit=1, probe="")
    run_eval(config, progress=False)
    lines = qa.read_text().splitlines()
    qa.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")  # two questions swap ids
    with pytest.raises(ValueError, match="QA file"):
        run_eval(config, progress=False)


def test_resume_refuses_answers_made_by_an_artifact_retrained_in_place(tmp_path, vellmar_index):
    from peft import LoraConfig, get_peft_model

    from rag.models import load_generator

    model, _ = load_generator(Config())
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "lora")
    run_json = tmp_path / "lora" / "run.json"
    run_json.write_text(json.dumps({"mode": "lora", "wall_seconds": 1.0, "train_questions": []}))
    closed_book = settings(tmp_path / "out", retrievers="none", generators="lora", adapter=str(tmp_path / "lora"), limit=1, probe="")
    with pytest.raises(ValueError, match="nothing to evaluate: generator lora: trained with retrieved passages.*add bm25"):
        run_eval(closed_book, progress=False)  # an adapter trained with passages is not scored closed book
    config = closed_book.override({"retrievers": ("bm25",), "index": str(vellmar_index)})
    run_eval(config, progress=False)
    run_json.write_text(json.dumps({"mode": "lora", "wall_seconds": 2.0, "train_questions": []}))  # retrained
    with pytest.raises(ValueError, match="--adapter"):
        run_eval(config, progress=False)


def test_an_artifact_trained_on_the_scored_questions_is_refused(tmp_path, vellmar_index):
    from rag.finetune.__main__ import main as finetune_main

    embedder = tmp_path / "embedder"
    code = finetune_main(["embeddings", "--qa", str(QA_FILE), "--index", str(vellmar_index), "--out", str(embedder),
                          "--seed", "1", "--batch-size", "2", "--max-steps", "1"])
    record = json.loads((embedder / "run.json").read_text())
    assert code == 0 and len(record["train_questions"]) == record["train_examples"]
    config = settings(tmp_path / "eval", index=str(vellmar_index), retrievers="dense-ft", generators="base",
                      embedder=str(embedder), split="val", limit=2)
    pattern = rf"--embedder {embedder}: trained on \d+ of the \d+ questions.*seed 1.*val_fraction 0.25.*split val, split_seed 0"
    with pytest.raises(ValueError, match=pattern):
        run_eval(config, progress=False)
    with pytest.raises(ValueError, match=pattern):  # scored on its ranking alone, it is checked all the same
        run_eval(config.override({"retrievers": ("none",), "ranking_only": ("dense-ft",)}), progress=False)
    run_eval(config.override({"split_seed": 1}), progress=False)  # the split it was trained with: no overlap


def test_fine_tuned_artifacts_and_forgetting_probe(tmp_path, vellmar_index, embedder):
    from peft import LoraConfig, get_peft_model

    from rag.models import load_generator

    model, _ = load_generator(Config())
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "lora")
    (tmp_path / "lora" / "run.json").write_text(json.dumps({"mode": "lora", "wall_seconds": 12.5, "trainable_params": 4608,
                                                            "artifact_bytes": 20000}))
    embedder.save(str(tmp_path / "embedder"))  # untrained: checks the plumbing, not the gain
    config = settings(tmp_path / "out", index=str(vellmar_index), retrievers="bm25,dense-ft", generators="base,lora",
                      adapter=str(tmp_path / "lora"), embedder=str(tmp_path / "embedder"), limit=2)
    report = run_eval(config, progress=False)
    lora = next(c for c in report.combinations if c.combination == "dense-ft+lora")
    assert lora.train_seconds is None and lora.trainable_params is None  # the embedder folder has no run.json
    searched = next(c for c in report.combinations if c.combination == "bm25+lora")
    assert (searched.train_seconds, searched.trainable_params, searched.artifact_bytes) == (12.5, 4608, 20000)
    assert lora.recall is not None and (tmp_path / "out" / "index-ft" / "CURRENT").is_file()
    assert [(p.generator, p.questions) for p in report.forgetting] == [("base", 2), ("lora", 2)]
    base, lora = report.forgetting
    assert base.f1_change is None  # an untrained LoRA (B = 0) answers exactly as the base model: no forgetting
    assert (lora.f1_change.mean, lora.f1_change.low, lora.f1_change.high) == (0.0, 0.0, 0.0)
    assert "## Forgetting" in (tmp_path / "out" / "report.md").read_text()


def test_soft_prompt_and_full_generators_end_to_end(tmp_path, vellmar_index):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from rag.finetune.causal import save_with_tokenizer
    from rag.models import load_generator

    model, tokenizer = load_generator(Config(), for_training=True)
    save_with_tokenizer(model, tokenizer, tmp_path / "full")  # the base weights, as `finetune full` writes a model
    (tmp_path / "full" / "run.json").write_text(json.dumps({"mode": "full", "wall_seconds": 30.0,
                                                           "trainable_params": 134515008, "artifact_bytes": 538000000}))
    soft = get_peft_model(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
    soft.save_pretrained(tmp_path / "soft")
    config = settings(tmp_path / "out", index=str(vellmar_index), retrievers="none,bm25", generators="base,soft-prompt,full",
                      soft_prompt=str(tmp_path / "soft"), generator=str(tmp_path / "full"), limit=2, probe="")
    report = run_eval(config, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    by = {(r["combination"], r["qid"]): r for r in rows}
    # Closed book only base: soft-prompt and full are fine-tuned with passages (as finetune trains them), so only bm25.
    assert sorted({r["combination"] for r in rows}) == ["bm25+base", "bm25+full", "bm25+soft-prompt", "none+base"]
    assert len(rows) == 2 * 4
    for (combination, qid), row in by.items():
        retriever, generator = combination.split("+")
        base = by[(f"{retriever}+base", qid)]
        if generator == "full":  # the same weights from another folder: the same answers
            assert row["generated"] == base["generated"] and row["prompt_tokens"] == base["prompt_tokens"]
        if generator == "soft-prompt":  # four virtual tokens in front of the same text prompt
            assert row["prompt_tokens"] == base["prompt_tokens"] + 4
    full = next(c for c in report.combinations if c.combination == "bm25+full")
    assert (full.train_seconds, full.trainable_params) == (30.0, 134515008)


def test_a_full_fine_tune_trained_with_the_corpus_in_its_prompt_is_scored_with_it_and_compared_with_each_arm(tmp_path, vellmar_index):
    import shutil

    from peft import LoraConfig, TaskType, get_peft_model

    from rag.finetune.causal import save_with_tokenizer
    from rag.models import load_generator

    def recorded(folder, mode, objective):
        (folder / "run.json").write_text(json.dumps({"mode": mode, "hyperparameters": {"objective": objective}}))
        return str(folder)

    model, tokenizer = load_generator(Config(), for_training=True)
    save_with_tokenizer(model, tokenizer, tmp_path / "full")  # the base weights, as `finetune full` writes a model
    shutil.copytree(tmp_path / "full", tmp_path / "full-pp", copy_function=os.link)
    get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=2)).save_pretrained(tmp_path / "lora-pp")  # B = 0: base's answers
    folders = {"generator": recorded(tmp_path / "full", "full", "supervised"),
               "preprompt_generator": recorded(tmp_path / "full-pp", "full", "preprompt"),
               "preprompt_adapter": recorded(tmp_path / "lora-pp", "lora", "preprompt")}
    config = EvalConfig(str(QA_FILE), str(tmp_path / "out"), index=str(vellmar_index), retrievers=("none", "bm25", "corpus"),
                        generators=("base", "full", "lora-pp", "full-pp"), limit=2, probe="",
                        rag=Config().override({**TINY, "corpus_context_tokens": 1500}), **folders)
    report = run_eval(config, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    by = {(r["combination"], r["qid"]): r for r in rows}
    # Each fine-tune only with the prompt it trained on: full with a ranking retriever, full-pp with the whole corpus.
    assert sorted({r["combination"] for r in rows}) == [
        "bm25+base", "bm25+full", "corpus+base", "corpus+full-pp", "corpus+lora-pp", "none+base"]
    for (combination, qid), row in by.items():
        if combination == "corpus+full-pp":  # the same weights from another folder, the same prompt: the same answers
            base = by[("corpus+base", qid)]
            assert row["generated"] == base["generated"] and row["prompt_tokens"] == base["prompt_tokens"] > 1000
    pairs = {(c.factor, c.a, c.b) for c in report.verdict.comparisons}
    assert {("fine-tuning", "corpus+full-pp", "corpus+base"), ("method", "corpus+lora-pp", "corpus+full-pp"),
            ("corpus", "corpus+full-pp", "bm25+full")} <= pairs
    assert ("corpus", "corpus+lora-pp", "bm25+full") not in pairs  # an arm against another method is two factors
    refused = dataclasses.replace(config, out=str(tmp_path / "refused"), preprompt_generator=folders["generator"])
    with pytest.raises(ValueError, match="--preprompt-generator .*trained with --objective supervised, not preprompt"):
        run_eval(refused, progress=False)


def test_throughput_compares_batched_and_sequential(generator):
    prompts = [generator.tokenizer("Question: what is two plus two?")["input_ids"]] * 2
    result = throughput(generator, prompts)
    assert result.questions == 2 and result.batched_qps > 0 and result.sequential_qps > 0
    assert result.speedup == pytest.approx(result.batched_qps / result.sequential_qps)
