"""Eval trust (#9): gold passages, abstention, answer extraction and the verdict, on hand-made and real cases.

Fast tests: no generation. Each case is one that misled the eval before
(the issue quotes them), and each would fail again if its fix were reverted.
"""

import dataclasses
import json
import math

import pytest
from conftest import QA_FILE, SHARED

from rag import Config
from rag.config import CLOSED_BOOK
from rag.eval.artifacts import load_artifact
from rag.eval.dataset import gold_chunk_ids, select, split_key
from rag.eval.runner import check_leakage
from rag.finetune.config import FinetuneConfig
from rag.finetune.data import load_data
from rag.eval.metrics import abstained, holm, paired_difference, paired_p_value, token_f1
from rag.eval.predictions import Prediction
from rag.eval.report import build_report
from rag.eval.config import EvalConfig
from rag.eval.variants import GeneratorSpec, RetrieverSpec
from rag.eval.artifacts import Artifact
from rag.index import Index
from rag.passage import Chunk
from rag.prompt import answer_text, cited_numbers
from rag.qa import GoldPassages, QAItem, fold_split, load_qa, question_fingerprint

# ---------------------------------------------------------------------------- gold passages

FAIR = [
    Chunk("You live on Vellmar, or you have spent at least 90 nights on the island.", "/c/membership.md"),
    Chunk("Fair Committee: nine members, responsible for the annual Lantern Fair.", "/c/membership.md"),
    Chunk("The library was started in 1956 by Agathe Morrow.", "/c/seed-library.txt"),
    Chunk("A member may take out 6 packets in one season.", "/c/seed-library.txt"),
]


def test_gold_passages_match_answers_on_word_boundaries():
    finder = GoldPassages(FAIR)
    # "9" is not in "90 nights": the chunk that says "nine members" is the only gold one.
    assert finder.find(QAItem("How many people sit on the Fair Committee?", ["nine", "9"], "membership.md"))[1] == [1]
    # "6" is not in "1956".
    assert finder.find(QAItem("How many seed packets per season?", ["6"], "seed-library.txt"))[1] == [3]


def test_gold_passages_prefer_the_chunk_holding_the_most_and_longest_answers():
    chunks = [
        Chunk("Room 9 is upstairs.", "/c/a.md"),  # holds "9" only
        Chunk("The committee has nine members.", "/c/a.md"),  # holds the longer "nine"
        Chunk("Nine members (9 in all) sit on it.", "/c/a.md"),  # holds both
    ]
    assert GoldPassages(chunks).find(QAItem("How many?", ["nine", "9"], "a.md"))[1] == [2]
    assert GoldPassages(chunks[:2]).find(QAItem("How many?", ["nine", "9"], "a.md"))[1] == [1]


def test_yes_no_questions_take_the_whole_source_document():
    # "no" is a word of almost every text: it says nothing about where the evidence is.
    chunks = [Chunk("No dogs on the pier.", "/c/a.md"), Chunk("Cats are welcome.", "/c/a.md"), Chunk("No.", "/c/b.md")]
    document, holding = GoldPassages(chunks).find(QAItem("Are cats allowed?", ["no"], "a.md", kind="yesno"))
    assert document == [0, 1] and holding == []


def test_real_questions_get_the_right_gold_chunks(vellmar_index):
    index = Index.open(vellmar_index)
    questions = {q.item.question: q for q in select(load_qa(QA_FILE))}
    fair = questions["How many people sit on the Fair Committee?"]
    packets = questions["How many seed packets can a member take out in one season?"]
    gold = gold_chunk_ids(index, [fair, packets]).relevant
    assert all("nine members" in c.text for c in index.chunks(gold[fair.qid]))
    assert all("6 packets" in c.text for c in index.chunks(gold[packets.qid]))


def test_gold_coverage_counts_questions_without_a_gold_chunk(vellmar_index):
    index = Index.open(vellmar_index)
    items = [
        QAItem("Founded when?", ["9 October 1891"], "about.md"),
        QAItem("Paraphrased answer?", ["an answer written nowhere"], "about.md"),
        QAItem("From another corpus?", ["x"], "elsewhere.md"),
        QAItem("Unanswerable?", []),
    ]
    gold = gold_chunk_ids(index, select(items))
    assert (gold.holding_answer, gold.whole_document, gold.not_indexed) == (1, 1, 1)
    assert set(gold.relevant) == {"q00000", "q00001"}


# ---------------------------------------------------------------------------- held-out documents (--split-by document)

SQUAD = SHARED / "squad" / "notre-dame-train-v1.1.json"


def squad_data(tmp_path, **fields):
    return load_data(FinetuneConfig("lora", str(tmp_path / "lora"), qa=str(SQUAD), **fields))


def seen_in_training(data) -> set[str]:
    """The passages a generator run trains on: its examples' gold passages and its distractor and document pool."""
    return {e.positive for e in data.train} | {p.text for p in data.corpus}


@pytest.mark.parametrize("folds", [None, 3])
def test_split_by_document_keeps_the_scored_questions_paragraphs_out_of_training(tmp_path, folds):
    """The eval's held-out questions (val split, or fold 0) are the ones rag.finetune holds out, and no text of
    their SQuAD paragraphs reaches training; split by question, their paragraphs are trained on."""
    cross_validation = {"folds": folds, "fold": 0} if folds else {}
    questions = select(load_qa(SQUAD), "all" if folds else "val", split_by="document")
    scored = fold_split(questions, folds, 0, key=split_key("document"))[1] if folds else questions
    scored_paragraphs = {q.item.context for q in scored}
    by_document = squad_data(tmp_path, split_by="document", **cross_validation)
    assert 0 < len(scored_paragraphs) < len({item.context for item in load_qa(SQUAD)})
    assert not scored_paragraphs & seen_in_training(by_document)
    assert not {e.positive for e in by_document.train} & {e.positive for e in by_document.val}
    trained_or_validated = {e.query for e in by_document.train + by_document.val}
    if folds:  # every other question is trained or validated on: the folds partition the set
        assert trained_or_validated == {q.item.question for q in questions} - {q.item.question for q in scored}
    else:
        assert {e.query for e in by_document.val} == {q.item.question for q in scored}
    assert scored_paragraphs & seen_in_training(squad_data(tmp_path, **cross_validation))


def test_eval_by_document_refuses_an_artifact_trained_on_a_scored_questions_paragraph(tmp_path):
    from rag.finetune.__main__ import main as finetune_main

    fold_0 = fold_split(select(load_qa(SQUAD)), 2, 0, key=split_key("document"))[1]
    settings = EvalConfig(str(SQUAD), str(tmp_path / "eval"), corpus_from_qa=True, folds=2, split_by="document")
    artifacts = {}
    for split_by in ("question", "document"):
        out = tmp_path / split_by
        assert finetune_main(["embeddings", "--qa", str(SQUAD), "--out", str(out), "--folds", "2", "--fold", "0",
                              "--split-by", split_by, "--batch-size", "2", "--max-steps", "1", "--limit", "8"]) == 0
        artifacts[split_by] = load_artifact("--embedder", str(out))
    with pytest.raises(ValueError, match=r"trained on \d+ of the \d+ questions of fold 0 .*split by question"):
        check_leakage([artifacts["question"]], fold_0, settings, fold=0)
    # Without the questions it trained on, only their paragraphs are left in common: the document check refuses them.
    trained = set(artifacts["question"].train_questions)
    untrained = [q for q in fold_0 if question_fingerprint(q.item.question) not in trained]
    with pytest.raises(ValueError, match=r"trained on \d+ of the \d+ documents of fold 0 .*--split-by document"):
        check_leakage([artifacts["question"]], untrained, settings, fold=0)
    assert check_leakage([artifacts["question"]], untrained, settings.override({"split_by": "question"}), fold=0) == []
    assert check_leakage([artifacts["document"]], fold_0, settings, fold=0) == []
    unrecorded = dataclasses.replace(artifacts["document"], train_documents=None)  # an artifact from before --split-by
    assert "lists no training documents" in check_leakage([unrecorded], fold_0, settings, fold=0)[0]


# ---------------------------------------------------------------------------- answers: extraction and abstention


@pytest.mark.parametrize(
    ("generated", "scored"),
    [
        ("9 October 1891 [1, 2]", "9 October 1891"),
        ("9 October 1891 [1][2].", "9 October 1891 ."),
        ("[1] about.md\n9 October 1891 [1]", "9 October 1891"),
        ("[2] emergency-procedures.pdf, page 3\nChannel 16", "Channel 16"),
        ("Answer: Maren Quillfeather [1]", "Maren Quillfeather"),
        ("Paris.\n\n## What is the capital of Spain?", "Paris."),
        # a lead-in announces the answer on the next line: scoring it alone would lose the answer
        ("The answer is:\n\n9 October 1891 [1]\n\nQuestion: next?", "The answer is: 9 October 1891"),
        ("La réponse est :\n[2] guide.md\nChannel 16", "La réponse est : Channel 16"),
        ("The answer is:", "The answer is:"),
    ],
)
def test_answer_text_strips_citations_headers_and_labels(generated, scored):
    assert answer_text(generated) == scored


def test_citation_f1_is_not_lowered_by_a_list_of_citations():
    assert token_f1(answer_text("9 October 1891 [1, 2]"), ["9 October 1891"]) == 1.0
    assert cited_numbers("Morrow [1, 3] and [2]") == {1, 2, 3}


@pytest.mark.parametrize(
    "output",
    [
        "The context does not contain the answer.",  # the preprompt's own wording
        "I don't know.",
        "There is no information about the ferry's captain in the context.",
        "The answer is not stated in the context.",
        "The passages do not mention who built the pier.",
        "I cannot answer that from the context.",
    ],
)
def test_abstentions_from_real_outputs_are_recognised(output):
    assert abstained(output)


@pytest.mark.parametrize("output", ["Nine members [1]", "The fair lasts 90 nights", "Unknown Pleasures [2]", "I know: Paris"])
def test_answers_are_not_taken_for_abstentions(output):
    assert not abstained(output)


# ---------------------------------------------------------------------------- statistics


def test_holm_adjusts_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, but never below the previous: 0.06)
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([]) == []


def test_paired_p_value_separates_a_consistent_gain_from_noise():
    questions = [f"q{i}" for i in range(30)]
    better = {q: 0.6 for q in questions}
    worse = {q: 0.5 for q in questions}
    assert paired_p_value(better, worse) < 0.001
    mixed = {q: 0.6 if i % 2 else 0.4 for i, q in enumerate(questions)}  # +0.1 and -0.1 in turn: no effect
    assert paired_p_value(mixed, worse) > 0.5
    assert paired_p_value(worse, worse) == 1.0


# ---------------------------------------------------------------------------- the verdict on hand-made predictions

N = 40
RETRIEVERS = {name: RetrieverSpec(name, name) for name in ("none", "bm25", "dense", "hybrid")}
LORA = Artifact("--adapter", "/runs/lora", "lora", 100.0, 460_800, 1_900_000)
GENERATORS = {"base": GeneratorSpec("base", Config()), "lora": GeneratorSpec("lora", Config(), "/runs/lora", LORA)}


def predictions(f1_by_combination: dict[str, list[float]], abstain: dict[str, bool] | None = None, kinds=()) -> list[Prediction]:
    rows = []
    for combination, scores in f1_by_combination.items():
        retriever, generator = combination.split("+")
        for number, f1 in enumerate(scores):
            rows.append(Prediction(
                "qa", combination, retriever, generator, f"q{number:05d}", "question?", ["answer"], "raw", "answer",
                [], [], 100, 0.5, 1000.0, f1, f1, None, bool(abstain and abstain.get(combination)),
                kinds[number % len(kinds)] if kinds else None,
            ))
    return rows


def report_of(rows: list[Prediction], retrievers=("none", "bm25"), generators=("base", "lora")):
    settings = EvalConfig("qa.jsonl", "out", bootstrap_resamples=2000)
    qids = {p.qid for p in rows}
    return build_report(rows, settings, [RETRIEVERS[r] for r in retrievers], [GENERATORS[g] for g in generators],
                        qids, set(), [], 1.0)


def test_verdict_knows_the_best_the_cheapest_within_noise_and_what_clearly_beats_what():
    rows = predictions({
        "none+base": [0.0] * N,
        "none+lora": [1.0, 0.0] * (N // 2),  # fine-tuning alone: +0.5
        "bm25+base": [1.0] * (N - 1) + [0.0],  # retrieval alone: +0.975
        "bm25+lora": [1.0] * N,  # best, but within noise of bm25+base, which needs no training
    })
    verdict = report_of(rows).verdict
    assert verdict.best == "bm25+lora"
    assert verdict.cheapest == "bm25+base"
    assert set(verdict.within_noise) == {"bm25+lora", "bm25+base"}
    outcome = {(c.factor, c.a, c.b): c.outcome for c in verdict.comparisons}
    assert outcome == {
        ("retrieval", "bm25+base", "none+base"): "clearly beats",
        ("retrieval", "bm25+lora", "none+lora"): "clearly beats",
        ("fine-tuning", "none+lora", "none+base"): "clearly beats",
        ("fine-tuning", "bm25+lora", "bm25+base"): "within noise of",
    }


def test_verdict_compares_one_factor_at_a_time():
    # The old verdict credited retrieval with the best of all (bm25+lora) against the best closed book
    # (none+base): here retrieval does nothing for either generator, fine-tuning does everything.
    rows = predictions({
        "none+base": [0.0] * N,
        "bm25+base": [0.0] * N,
        "none+lora": [1.0] * N,
        "bm25+lora": [1.0] * N,
    })
    comparisons = report_of(rows).verdict.comparisons
    retrieval = [c for c in comparisons if c.factor == "retrieval"]
    assert [(c.a, c.b, c.outcome) for c in retrieval] == [
        ("bm25+base", "none+base", "within noise of"), ("bm25+lora", "none+lora", "within noise of")]
    assert all(c.outcome == "clearly beats" for c in comparisons if c.factor == "fine-tuning")


def test_the_fine_tuning_methods_are_compared_with_each_other_where_they_are_tested_the_same_way():
    # LoRA against a soft prompt (the user's document 002) and a pretrained full fine-tune against one from scratch
    # (003) had no comparison of their own: only each against base.
    def trained(name, closed_book=False):
        return GeneratorSpec(name, Config(), f"/runs/{name}", dataclasses.replace(LORA, path=f"/runs/{name}"), only_with=CLOSED_BOOK if closed_book else None)
    generators = [GENERATORS["base"], trained("lora"), trained("soft-prompt"), trained("full-cb", True), trained("scratch", True)]
    other_model = [GENERATORS["base"].labelled("gemma"), trained("lora").labelled("gemma")]
    rows = predictions({
        "none+base": [0.0] * N, "bm25+base": [0.0] * N, "bm25+lora": [1.0] * N, "bm25+soft-prompt": [0.5] * N,
        "none+full-cb": [0.5] * N, "none+scratch": [0.5] * N, "none+base@gemma": [0.0] * N, "bm25+base@gemma": [0.0] * N,
        "bm25+lora@gemma": [0.0] * N,
    })
    report = build_report(rows, EvalConfig("qa.jsonl", "out", bootstrap_resamples=2000), [RETRIEVERS["none"], RETRIEVERS["bm25"]],
                          generators + other_model, {p.qid for p in rows}, set(), [], 1.0)
    method = [(c.a, c.b, c.outcome) for c in report.verdict.comparisons if c.factor == "method"]
    # Not lora against full-cb (tested with passages against closed book), nor against another model's lora.
    assert method == [("none+full-cb", "none+scratch", "within noise of"), ("bm25+lora", "bm25+soft-prompt", "clearly beats")]
    assert any(line.startswith("Fine-tuning method (") and ": of 2 comparisons, 1 clearly better, 1 within noise" in line
               for line in report.verdict.summary)


def test_sentence_contexts_are_compared_with_whole_passages_and_never_scored_closed_book():
    sentences = GeneratorSpec("sentences", Config(context="sentences"))
    assert not sentences.crosses(RETRIEVERS["none"]) and sentences.crosses(RETRIEVERS["bm25"])
    assert GENERATORS["base"].crosses(RETRIEVERS["none"])
    rows = predictions({"none+base": [0.0] * N, "bm25+base": [0.0] * N, "bm25+sentences": [1.0] * N})
    settings = EvalConfig("qa.jsonl", "out", bootstrap_resamples=2000)
    report = build_report(rows, settings, [RETRIEVERS["none"], RETRIEVERS["bm25"]], [GENERATORS["base"], sentences],
                          {p.qid for p in rows}, set(), [], 1.0)
    context = [(c.a, c.b, c.outcome) for c in report.verdict.comparisons if c.factor == "context"]
    assert context == [("bm25+sentences", "bm25+base", "clearly beats")]


def test_a_generator_fine_tuned_with_retrieved_passages_is_scored_only_with_retrieval():
    lora = GENERATORS["lora"]  # trained with passages in its prompts: closed book it would be tested unlike it was trained
    assert not lora.crosses(RETRIEVERS["none"]) and not lora.crosses(RetrieverSpec("corpus", "corpus"))
    assert all(lora.crosses(RETRIEVERS[name]) for name in ("bm25", "dense", "hybrid"))
    closed_book = GeneratorSpec("lora-cb", Config(), "/runs/lora-cb", LORA, only_with=CLOSED_BOOK)
    assert [name for name, retriever in RETRIEVERS.items() if closed_book.crosses(retriever)] == ["none"]


def test_few_shot_is_compared_with_zero_shot_within_each_retriever():
    # Prompt engineering against base is the user's own question (document 001); without this factor the verdict
    # compared few-shot only with closed book, and a gain from the examples alone went unreported.
    fewshot = GeneratorSpec("fewshot", Config(few_shot=4))
    rows = predictions({"none+base": [0.0] * N, "bm25+base": [0.0] * N, "none+fewshot": [0.0] * N, "bm25+fewshot": [1.0] * N})
    settings = EvalConfig("qa.jsonl", "out", bootstrap_resamples=2000)
    report = build_report(rows, settings, [RETRIEVERS["none"], RETRIEVERS["bm25"]], [GENERATORS["base"], fewshot],
                          {p.qid for p in rows}, set(), [], 1.0)
    prompting = [(c.a, c.b, c.outcome) for c in report.verdict.comparisons if c.factor == "prompting"]
    assert prompting == [("none+fewshot", "none+base", "within noise of"), ("bm25+fewshot", "bm25+base", "clearly beats")]
    assert any(line.startswith("Few-shot vs zero-shot") for line in report.verdict.summary)
    assert GENERATORS["lora"].prompt_factor is None  # a fine-tune is the fine-tuning factor, not a prompt variant


def test_holm_keeps_a_lone_lucky_comparison_from_being_called_clear():
    # Ten one-factor comparisons (3 retrievers x 2 generators, 4 fine-tuning pairs), nothing works but one
    # small gain: 7 of 40 questions, a raw p-value of 2/128 that a single test would call clear.
    names = [f"{r}+{g}" for r in ("none", "bm25", "dense", "hybrid") for g in ("base", "lora")]
    rows = predictions({name: [1.0] * 7 + [0.0] * (N - 7) if name == "bm25+base" else [0.0] * N for name in names})
    comparisons = report_of(rows, retrievers=("none", "bm25", "dense", "hybrid")).verdict.comparisons
    assert len(comparisons) == 10
    lucky = next(c for c in comparisons if (c.a, c.b) == ("bm25+base", "none+base"))
    assert lucky.p_value < 0.05 and lucky.adjusted_p_value >= 0.05
    assert all(c.outcome == "within noise of" for c in comparisons)


def test_an_always_abstaining_model_does_not_look_good():
    rows = predictions({"bm25+base": [1.0] * N, "bm25+lora": [0.0] * N}, abstain={"bm25+lora": True})
    unanswerable = [Prediction("qa", c, *c.split("+"), "u0", "q?", [], "raw", "x", [], [], 100, 0.5, 1000.0, None, None,
                               None, c == "bm25+lora") for c in ("bm25+base", "bm25+lora")]
    report = report_of(rows + unanswerable, retrievers=("bm25",))
    scores = {s.combination: s for s in report.combinations}
    assert scores["bm25+lora"].abstention == 1.0 and scores["bm25+lora"].false_abstention == 1.0
    assert scores["bm25+base"].abstention == 0.0 and scores["bm25+base"].false_abstention == 0.0
    assert report.verdict.best == "bm25+base"


def test_f1_is_broken_down_by_question_kind():
    rows = predictions({"bm25+base": [1.0, 0.0, 0.5, 0.0] * 10}, kinds=("name", "number", "date", "yesno"))
    report = report_of(rows, retrievers=("bm25",), generators=("base",))
    assert report.combinations[0].f1_by_kind == {"date": 0.5, "name": 1.0, "number": 0.0, "yesno": 0.0}
    assert report.questions_by_kind == {"date": 10, "name": 10, "number": 10, "yesno": 10}
    from rag.eval.report import render_markdown

    assert "| bm25+base | 0.500 | 1.000 | 0.000 | 0.000 |" in render_markdown(report)


def test_paired_difference_still_pairs_by_question():
    assert paired_difference({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}).mean == 0.5
    assert math.isclose(paired_p_value({"a": 1.0}, {"a": 1.0}), 1.0)


def test_under_folds_the_training_cost_is_the_mean_over_the_folds_artifacts():
    """Each fold trained its own copy: the cost of one training is their mean, not fold 0's alone."""
    folds = [LORA, dataclasses.replace(LORA, path="/runs/fold-1/lora", wall_seconds=300.0, artifact_bytes=2_100_000)]
    rows = predictions({"bm25+base": [0.0] * N, "bm25+lora": [1.0] * N})
    settings = EvalConfig("qa.jsonl", "out", folds=2)
    report = build_report(rows, settings, [RETRIEVERS["bm25"]], [GENERATORS["base"], GENERATORS["lora"]],
                          {p.qid for p in rows}, set(), [], 1.0, artifacts=folds)
    lora = next(s for s in report.combinations if s.generator == "lora")
    assert (lora.train_seconds, lora.artifact_bytes, lora.trainable_params) == (200.0, 2_000_000, 460_800)


def test_the_gpu_peak_column_shows_each_rows_own_peak_and_only_where_a_gpu_answered():
    from rag.eval.report import render_markdown

    on_cpu = predictions({"bm25+base": [1.0] * 4, "bm25+lora": [0.0] * 4})
    cpu_report = report_of(on_cpu, retrievers=("bm25",))
    assert [s.peak_gpu_mb for s in cpu_report.combinations] == [None, None]
    assert "GPU peak MB" not in render_markdown(cpu_report)

    # Each row's peak is reset when it begins answering, so rows compare: the larger per-batch mark is the row's.
    peaks = {"bm25+base": [700.0, 900.0, 800.0, 650.0], "bm25+lora": [1200.0, 1100.0, 1150.0, 1000.0]}
    on_gpu = [dataclasses.replace(p, peak_gpu_mb=peaks[p.combination][int(p.qid[1:])]) for p in on_cpu]
    gpu_report = report_of(on_gpu, retrievers=("bm25",))
    assert {s.combination: s.peak_gpu_mb for s in gpu_report.combinations} == {"bm25+base": 900.0, "bm25+lora": 1200.0}
    table = render_markdown(gpu_report)
    header = next(line for line in table.splitlines() if line.startswith("| Combination |")).split(" | ")
    column = header.index("GPU peak MB")
    cells = {line.split(" | ")[0][2:]: line.split(" | ")[column] for line in table.splitlines() if line.startswith("| bm25+")}
    assert cells == {"bm25+base": "**900**", "bm25+lora": "1,200"}  # the least memory is the better figure


def test_predictions_written_before_the_gpu_peak_was_recorded_still_resume(tmp_path):
    """Every lab report committed before ``peak_gpu_mb`` has lines without it: they read back, the peak unknown."""
    from rag.eval.predictions import PredictionLog

    [old] = predictions({"bm25+base": [1.0]})
    line = dataclasses.asdict(old)
    del line["peak_gpu_mb"]
    (tmp_path / "predictions.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    assert PredictionLog(tmp_path / "predictions.jsonl").predictions == [old]
