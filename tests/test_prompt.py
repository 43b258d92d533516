"""Prompt: preprompt, few-shot turns and numbered passages packed under the token budget."""

import pytest

from rag import Index, Retriever
from rag.context import split_sentences
from rag.embed import embed_texts
from rag.prompt import BUILTIN_FEW_SHOT, ENGLISH_PROMPT, build_prompt, load_few_shot, passage_header


@pytest.fixture(scope="module")
def hits(vellmar_index, config, embedder):
    retriever = Retriever(Index.open(vellmar_index), config, embedder=embedder)
    return [hit.chunk for hit in retriever.search(["What happens at the Lantern Fair?"], "hybrid", k=8)[0]]


def test_passages_are_numbered_in_rank_order(hits, generator, config):
    prompt = build_prompt("What happens at the Lantern Fair?", hits[:3], generator.tokenizer, config, [])
    user = prompt.messages[-1]["content"]
    assert prompt.messages[0] == {"role": "system", "content": ENGLISH_PROMPT.preprompt}  # the default: the question's language
    positions = [user.index(f"[{n}] ") for n in (1, 2, 3)]
    assert positions == sorted(positions)
    assert user.endswith("Question: What happens at the Lantern Fair?")
    assert prompt.passages == hits[:3] and prompt.omitted == 0 and not prompt.truncated


@pytest.mark.parametrize("budget", [250, 400, 700])
def test_the_budget_is_never_exceeded_and_omissions_are_reported(hits, generator, config, budget):
    small = config.override({"context_tokens": budget})
    prompt = build_prompt("What happens at the Lantern Fair?", hits, generator.tokenizer, small, [])
    assert len(prompt.input_ids) <= budget
    assert prompt.omitted == len(hits) - len(prompt.passages) > 0
    rendered = generator.tokenizer.decode(prompt.input_ids)
    assert "Question: What happens at the Lantern Fair?" in rendered


def test_a_question_longer_than_the_budget_is_an_error(generator, config):
    with pytest.raises(ValueError, match="context budget"):
        build_prompt("why " * 400, [], generator.tokenizer, config.override({"context_tokens": 200}), [])


def test_few_shot_examples_become_chat_turns(hits, generator, config):
    shots = config.override({"few_shot": 2})
    examples = load_few_shot(shots)
    assert examples == BUILTIN_FEW_SHOT[:2]
    prompt = build_prompt("Q?", hits[:1], generator.tokenizer, shots, examples)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[2]["content"] == BUILTIN_FEW_SHOT[0].answer


def test_closed_book_has_no_context_section(generator, config):
    prompt = build_prompt("What is the capital of France?", [], generator.tokenizer, config.override({"few_shot": 1, "retriever": "none"}))
    assert all("Context:" not in m["content"] for m in prompt.messages)
    assert prompt.messages[2]["content"] == "1911"  # the citation is dropped when there are no passages


def test_few_shot_file_is_read_and_bad_lines_are_named(tmp_path, config):
    good = tmp_path / "shots.jsonl"
    good.write_text('{"context": "c", "question": "q", "answer": "a"}\n')
    assert load_few_shot(config.override({"few_shot": 3, "few_shot_file": str(good)}))[0].answer == "a"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "c", "question": "q", "answer": "a"}\n{"context": "c"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_few_shot(config.override({"few_shot": 3, "few_shot_file": str(bad)}))


def test_sentence_context_keeps_each_sentence_under_its_own_passage_number(hits, generator, config, embedder):
    question = "What happens at the Lantern Fair?"
    sentences = config.override({"context": "sentences", "sentence_context_tokens": 120})
    prompt = build_prompt(question, hits[:4], generator.tokenizer, sentences, [], embedder=embedder)
    whole = build_prompt(question, hits[:4], generator.tokenizer, config, [])
    assert len(prompt.input_ids) < len(whole.input_ids) - 150
    # Passages keep their rank numbers, so a citation [n] names hits[n - 1], as with whole passages.
    assert prompt.passages == hits[: len(prompt.passages)]
    blocks = prompt.messages[-1]["content"].removeprefix("Context:\n").split("\n\nQuestion:")[0].split("\n\n")
    numbers = []
    for block in blocks:
        header, text = block.split("\n", 1)
        number = int(header[1 : header.index("]")])
        assert header == passage_header(number, prompt.passages[number - 1])
        # Every sentence shown under [n] comes from passage n.
        assert all(sentence in prompt.passages[number - 1].text for sentence in text.split("\n"))
        numbers.append(number)
    assert numbers == sorted(numbers) and numbers
    kept_tokens = sum(len(generator.tokenizer(block.split("\n", 1)[1])["input_ids"]) for block in blocks)
    assert kept_tokens <= 120
    # The sentence closest to the question is among those kept.
    best = max(
        (s for passage in hits[:4] for s in split_sentences(passage.text)),
        key=lambda s: float(embed_texts(embedder, [question, s], 2).prod(axis=0).sum()),
    )
    assert best in prompt.messages[-1]["content"]


def test_sentence_context_needs_the_embedder_and_a_known_context(hits, generator, config):
    with pytest.raises(ValueError, match="embedder"):
        build_prompt("Why?", hits[:2], generator.tokenizer, config.override({"context": "sentences"}), [])
    with pytest.raises(ValueError, match="passages, sentences"):
        build_prompt("Why?", hits[:2], generator.tokenizer, config.override({"context": "summary"}), [])
