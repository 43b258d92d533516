"""Prompt: system preprompt, optional few-shot turns, numbered passages packed under a token budget.

Passages go in rank order while the rendered chat prompt stays within
``config.context_tokens`` generator tokens; the first passage that does not fit
is cut to the room left (if at least ``MIN_PASSAGE_TOKENS``), and the rest are
left out. Nothing overflows silently: :class:`Prompt` says how many passages
were omitted or truncated, and a question that alone exceeds the budget raises.

With ``config.retriever == CLOSED_BOOK`` the prompt has no context section at
all (the closed-book baseline), which differs from a retrieval that found nothing.

Few-shot examples show the model short, extractive answers, where a 135M
model gains most (it otherwise answers in whole sentences).

Citations: the model cites passages by their number, ``[1]``, ``[1, 2]`` or
``[1][2]``; :func:`cited_numbers` reads them back and :func:`answer_text`
strips them, a passage header line the model echoes, and an ``Answer:`` label
from the answer that is scored.

    >>> prompt = build_prompt("Who founded it?", passages, tokenizer, Config(few_shot=2))  # doctest: +SKIP
    >>> len(prompt.input_ids) <= Config().context_tokens                                   # doctest: +SKIP
    True
    >>> sorted(cited_numbers("Agathe Morrow [1][3]"))
    [1, 3]
    >>> answer_text("9 October 1891 [1]\\n\\nQuestion: who ...")
    '9 October 1891'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag.config import CLOSED_BOOK, Config
from rag.jsonl import read_jsonl
from rag.passage import Passage

MIN_PASSAGE_TOKENS = 48
CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;–-]\s*\d+)*)\s*\]")  # [1], [1, 2], [1-3]
# A passage header as passage_header writes it: "[2] emergency-procedures.pdf, page 3".
HEADER_LINE = re.compile(r"^\[\d+\]\s+(?:\S+\.[A-Za-z0-9]{1,5}|passage|example)(?:, page \d+)?$")
ANSWER_LABEL = re.compile(r"^(?:answer|réponse)\s*:\s*", re.IGNORECASE)
CLOSED_BOOK_PREPROMPT = "Answer the question in a few words. If you do not know, say: I don't know."


@dataclass(frozen=True)
class FewShotExample:
    context: str
    question: str
    answer: str


# Generic, invented examples: they teach the answer format, not any domain fact.
BUILTIN_FEW_SHOT = [
    FewShotExample(
        "The Orla Bridge opened in 1911 and crosses the river Tams at its narrowest point.",
        "When did the Orla Bridge open?",
        "1911 [1]",
    ),
    FewShotExample(
        "Greyfield Library lends up to six books per card. Late returns cost ten cents a day.",
        "How many books can one card borrow at Greyfield Library?",
        "six [1]",
    ),
    FewShotExample(
        "The chess club meets on Thursdays in room B4. Its president is Mara Okafor.",
        "Who is the president of the chess club?",
        "Mara Okafor [1]",
    ),
    FewShotExample(
        "Kestrel Airways flies from Dunmore to the islands twice a week, on Mondays and Fridays.",
        "Where does Kestrel Airways fly from?",
        "Dunmore [1]",
    ),
]


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]
    input_ids: list[int]
    passages: list[Passage]  # the passages in the prompt, numbered [1]..[n] in this order
    omitted: int  # retrieved passages left out for the budget
    truncated: bool  # the last passage was cut to fit


def load_few_shot(config: Config) -> list[FewShotExample]:
    if not config.few_shot:
        return []
    examples = BUILTIN_FEW_SHOT
    if config.few_shot_file:
        examples = read_jsonl(
            config.few_shot_file,
            lambda row: FewShotExample(row["context"], row["question"], row["answer"]),
            "a JSON object with context, question, answer",
        )
    return examples[: config.few_shot]


def passage_header(number: int, passage: Passage) -> str:
    name = Path(passage.source).name if passage.source else "passage"
    page = f", page {passage.page}" if passage.page else ""
    return f"[{number}] {name}{page}"


def cited_numbers(answer: str) -> set[int]:
    """The passage numbers an answer cites."""
    return {int(n) for group in CITATION.findall(answer) for n in re.findall(r"\d+", group)}


def answer_text(generated: str) -> str:
    """The answer as scored: the first line with content, without citations, header or ``Answer:`` label.

    Why: a small model often runs on after its answer ("Paris.\\n\\n## What is ...");
    scoring only the first line is the usual stop-at-newline rule of QA harnesses,
    and the citations the RAG preprompt asks for are not part of the answer. The
    raw output is kept beside it (``Prediction.generated``).
    """
    for line in generated.splitlines():
        if HEADER_LINE.match(line.strip()):
            continue
        line = ANSWER_LABEL.sub("", CITATION.sub("", line).strip()).strip()
        if line:
            return line
    return ""


def user_turn(question: str, blocks: list[str], closed_book: bool) -> str:
    if closed_book:
        return f"Question: {question}"
    context = "\n\n".join(blocks) if blocks else "(no passages found)"
    return f"Context:\n{context}\n\nQuestion: {question}"


def build_messages(question: str, blocks: list[str], config: Config, examples: list[FewShotExample]) -> list[dict]:
    """Chat turns; ``blocks`` are the passages already rendered with their headers."""
    closed_book = config.retriever == CLOSED_BOOK
    messages = [{"role": "system", "content": CLOSED_BOOK_PREPROMPT if closed_book else config.preprompt}]
    for example in examples:
        shown = [f"[1] example\n{example.context}"]
        answer = example.answer.replace(" [1]", "") if closed_book else example.answer
        messages += [{"role": "user", "content": user_turn(example.question, shown, closed_book)}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": user_turn(question, blocks, closed_book)})
    return messages


def render(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def build_prompt(
    question: str,
    passages: list[Passage],
    tokenizer,
    config: Config,
    examples: list[FewShotExample] | None = None,
) -> Prompt:
    """The chat prompt for ``question`` over ``passages`` (best first); see the module docstring."""
    examples = load_few_shot(config) if examples is None else examples
    budget = config.context_tokens
    if config.retriever == CLOSED_BOOK:
        if passages:
            raise ValueError(f"retriever {CLOSED_BOOK!r} (closed book) takes no passages, got {len(passages)}")
        messages = build_messages(question, [], config, examples)
        ids = render(tokenizer, messages)
        _check_fits(len(ids), budget)
        return Prompt(messages, ids, [], 0, False)

    base = len(render(tokenizer, build_messages(question, [], config, examples)))
    _check_fits(base, budget)
    room = budget - base
    blocks: list[str] = []
    truncated = False
    for number, passage in enumerate(passages, 1):
        block = f"{passage_header(number, passage)}\n{passage.text}"
        cost = len(tokenizer(block + "\n\n", add_special_tokens=False)["input_ids"])
        if cost > room:
            if room >= MIN_PASSAGE_TOKENS:
                block_ids = tokenizer(block, add_special_tokens=False)["input_ids"][: room - 4]
                blocks.append(tokenizer.decode(block_ids) + " ...")
                truncated = True
            break
        blocks.append(block)
        room -= cost
    packed = len(blocks)
    # Token merges at block boundaries can shift the count slightly: drop passages until it fits.
    while True:
        messages = build_messages(question, blocks, config, examples)
        ids = render(tokenizer, messages)
        if len(ids) <= budget or not blocks:
            break
        blocks.pop()
    kept = list(passages[: len(blocks)])
    return Prompt(messages, ids, kept, len(passages) - len(kept), truncated and len(blocks) == packed)


def _check_fits(tokens: int, budget: int) -> None:
    if tokens > budget:
        raise ValueError(
            f"the question, preprompt and few-shot examples take {tokens} tokens, over the context budget "
            f"of {budget}; shorten the question, use fewer few-shot examples or raise context_tokens"
        )
