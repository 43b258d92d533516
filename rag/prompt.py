"""Prompt: system preprompt, optional few-shot turns, numbered passages packed under a token budget.

Passages go in rank order while the rendered chat prompt stays within
``config.context_tokens`` generator tokens; the first passage that does not fit
is cut to the room left (if at least ``MIN_PASSAGE_TOKENS``), and the rest are
left out. Nothing overflows silently: :class:`Prompt` says how many passages
were omitted or truncated, and a question that alone exceeds the budget raises.

Few-shot examples show the model short, extractive answers, where a 135M
model gains most (it otherwise answers in whole sentences).

    >>> prompt = build_prompt("Who founded it?", hits, tokenizer, Config(few_shot=2))  # doctest: +SKIP
    >>> len(prompt.input_ids) <= Config().context_tokens                              # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.config import Config
from rag.jsonl import read_jsonl
from rag.retrieve import Retrieved

MIN_PASSAGE_TOKENS = 48
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
    passages: list[Retrieved]  # the passages in the prompt, numbered [1]..[n] in this order
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


def passage_header(number: int, hit: Retrieved) -> str:
    page = f", page {hit.chunk.page}" if hit.chunk.page else ""
    return f"[{number}] {Path(hit.chunk.source).name}{page}"


def user_turn(question: str, passages: list[str] | None) -> str:
    if passages is None:  # closed book
        return f"Question: {question}"
    context = "\n\n".join(passages) if passages else "(no passages found)"
    return f"Context:\n{context}\n\nQuestion: {question}"


def build_messages(question: str, passages: list[str] | None, config: Config, examples: list[FewShotExample]) -> list[dict]:
    closed_book = passages is None
    messages = [{"role": "system", "content": CLOSED_BOOK_PREPROMPT if closed_book else config.preprompt}]
    for example in examples:
        shown = None if closed_book else [f"[1] example\n{example.context}"]
        answer = example.answer.replace(" [1]", "") if closed_book else example.answer
        messages += [{"role": "user", "content": user_turn(example.question, shown)}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": user_turn(question, passages)})
    return messages


def render(tokenizer, messages: list[dict]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def build_prompt(
    question: str,
    retrieved: list[Retrieved] | None,
    tokenizer,
    config: Config,
    examples: list[FewShotExample] | None = None,
) -> Prompt:
    """The chat prompt for ``question``; ``retrieved=None`` means closed book (no context section)."""
    examples = load_few_shot(config) if examples is None else examples
    budget = config.context_tokens
    if retrieved is None:
        messages = build_messages(question, None, config, examples)
        ids = render(tokenizer, messages)
        _check_fits(len(ids), budget)
        return Prompt(messages, ids, [], 0, False)

    base = len(render(tokenizer, build_messages(question, [], config, examples)))
    _check_fits(base, budget)
    room = budget - base
    passages: list[str] = []
    truncated = False
    for number, hit in enumerate(retrieved, 1):
        block = f"{passage_header(number, hit)}\n{hit.chunk.text}"
        cost = len(tokenizer(block + "\n\n", add_special_tokens=False)["input_ids"])
        if cost > room:
            if room >= MIN_PASSAGE_TOKENS:
                block_ids = tokenizer(block, add_special_tokens=False)["input_ids"][: room - 4]
                passages.append(tokenizer.decode(block_ids) + " ...")
                truncated = True
            break
        passages.append(block)
        room -= cost
    packed = len(passages)
    # Token merges at block boundaries can shift the count slightly: drop passages until it fits.
    while True:
        messages = build_messages(question, passages, config, examples)
        ids = render(tokenizer, messages)
        if len(ids) <= budget or not passages:
            break
        passages.pop()
    kept = retrieved[: len(passages)]
    return Prompt(messages, ids, kept, len(retrieved) - len(kept), truncated and len(passages) == packed)


def _check_fits(tokens: int, budget: int) -> None:
    if tokens > budget:
        raise ValueError(
            f"the question, preprompt and few-shot examples take {tokens} tokens, over the context budget "
            f"of {budget}; shorten the question, use fewer few-shot examples or raise context_tokens"
        )
