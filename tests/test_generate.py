"""Generate: prefix reuse answers exactly as a full prefill does."""

import pytest
import torch
from conftest import QA_FILE

from rag import Generator, Index, Retriever
from rag.generate import common_prefix
from rag.prompt import build_prompt
from rag.qa import load_qa


@pytest.fixture(scope="module")
def fp32_rag_prompts(vellmar_index, config, embedder, generator):
    """A float32 generator and few-shot RAG prompts of different lengths for four real questions."""
    # Any shared share is reused here: these tests check that reuse answers as a full prefill does.
    fp32 = config.override({"generator_precision": "fp32", "max_new_tokens": 16, "few_shot": 2, "min_prefix_share": 0})
    # The session's generator is fp32 where bf16 is not native (resolve_dtype); otherwise load one.
    loaded = Generator(generator.model, generator.tokenizer, fp32) if generator.model.dtype == torch.float32 else Generator.load(fp32)
    questions = [item.question for item in load_qa(QA_FILE)[:4]]
    hits = Retriever(Index.open(vellmar_index), config, embedder=embedder).search(questions, "hybrid", k=3)
    prompts = [build_prompt(q, [h.chunk for h in found], loaded.tokenizer, fp32).input_ids for q, found in zip(questions, hits)]
    assert len({len(p) for p in prompts}) > 1  # uneven: the separately prefilled path
    return loaded, prompts


def answers(generations):
    return [(g.text, g.new_tokens) for g in generations]


def test_prefix_reuse_gives_the_tokens_of_a_full_prefill(fp32_rag_prompts):
    loaded, prompts = fp32_rag_prompts
    full = Generator(loaded.model, loaded.tokenizer, loaded.config.override({"min_prefix_tokens": 0}))
    reusing = Generator(loaded.model, loaded.tokenizer, loaded.config)
    expected = answers(full.generate(prompts))
    assert full.kept_prefix_tokens == 0

    assert answers(reusing.generate(prompts)) == expected
    # The preprompt and two few-shot turns, at least, are shared and kept.
    assert reusing.kept_prefix_tokens > 100
    # Later prompts, one at a time, reuse the kept prefix; so does streaming.
    assert [answers(reusing.generate([prompt]))[0] for prompt in prompts] == expected
    assert "".join(reusing.stream(prompts[1])).strip() == expected[1][0]


def test_prompts_of_equal_length_share_the_prefix_in_one_batch(fp32_rag_prompts):
    loaded, prompts = fp32_rag_prompts
    reusing = Generator(loaded.model, loaded.tokenizer, loaded.config)
    alone = answers(Generator(loaded.model, loaded.tokenizer, loaded.config.override({"min_prefix_tokens": 0})).generate(prompts[:1]))
    assert answers(reusing.generate([prompts[0], prompts[0]])) == alone * 2
    assert reusing.kept_prefix_tokens == len(prompts[0]) - 1


def test_a_prefix_that_is_a_small_part_of_the_prompts_is_not_kept(fp32_rag_prompts):
    loaded, prompts = fp32_rag_prompts
    shared = len(common_prefix(prompts))
    assert 100 < shared < 0.5 * min(map(len, prompts))  # the preprompt and two few-shot turns before ~3 passages
    picky = Generator(loaded.model, loaded.tokenizer, loaded.config.override({"min_prefix_share": 0.5}))
    assert answers(picky.generate(prompts)) == answers(Generator(loaded.model, loaded.tokenizer, loaded.config).generate(prompts))
    assert picky.kept_prefix_tokens == 0  # prefilled whole: over a kept cache the long rest would take the slower path
    lenient = Generator(loaded.model, loaded.tokenizer, loaded.config.override({"min_prefix_share": shared / max(map(len, prompts)) - 0.01}))
    lenient.generate(prompts)
    assert lenient.kept_prefix_tokens == shared


def test_a_prompt_over_the_window_is_refused_before_generating(generator):
    window = generator.model.config.max_position_embeddings
    with pytest.raises(ValueError, match=f"exceed the generator's window of {window} tokens: lower context_tokens"):
        generator.generate([[1] * (window - generator.config.max_new_tokens + 1)])
    with pytest.raises(ValueError, match=r"corpus_context_tokens \(9000\) \+ max_new_tokens"):
        Generator(generator.model, generator.tokenizer, generator.config.override({"retriever": "corpus", "corpus_context_tokens": 9000}))
