"""Prompt: system preprompt, optional few-shot turns, numbered passages packed under a token budget.

Passages go in rank order while the rendered chat prompt stays within
``config.context_tokens`` generator tokens; the first passage that does not fit
is cut to the room left (if at least ``MIN_PASSAGE_TOKENS``), and the rest are
left out. Nothing overflows silently: :class:`Prompt` says how many passages
were omitted or truncated, and a question that alone exceeds the budget raises.

With ``config.retriever == CLOSED_BOOK`` the prompt has no context section at
all (the closed-book baseline), which differs from a retrieval that found nothing.

With ``config.retriever == WHOLE_CORPUS`` the passages are the whole corpus in document order, packed
under ``config.corpus_context_tokens``: the same for every question, so a generator prefills them once.

With ``config.context == "sentences"`` each passage shows only its sentences closest to the
question (rag/context.py), under ``config.sentence_context_tokens``, keeping its number.

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

from rag.config import CLOSED_BOOK, Config, prompt_budget
from rag.context import CONTEXTS, closest_sentences
from rag.jsonl import read_jsonl
from rag.language import DEFAULT_LANGUAGE, resolve_language
from rag.passage import Passage

MIN_PASSAGE_TOKENS = 48
CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;–-]\s*\d+)*)\s*\]")  # [1], [1, 2], [1-3]
# A passage header as passage_header writes it: "[2] emergency-procedures.pdf, page 3".
HEADER_LINE = re.compile(r"^\[\d+\]\s+(?:\S+\.[A-Za-z0-9]{1,5}|passage|example)(?:, page \d+)?$")
ANSWER_LABEL = re.compile(r"^(?:answer|réponse)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class FewShotExample:
    context: str
    question: str
    answer: str


@dataclass(frozen=True)
class PromptText:
    """The words of a prompt in one language: preprompts, section labels and built-in few-shot examples."""

    preprompt: str  # with retrieval
    closed_book: str  # without retrieval
    context_label: str
    question_label: str
    answer_label: str  # ends a plain-text prompt (a base model without chat template)
    no_passages: str
    few_shot: tuple[FewShotExample, ...]  # generic, invented: they teach the answer format, not any domain fact
    fill_in_blank: str  # opens a fill-in-the-blank training question (rag.finetune.cloze)
    decline: str  # what both preprompts ask for when the answer is unknown: the target of a trained unanswerable question


ENGLISH_PROMPT = PromptText(
    preprompt=(
        "You answer questions using only the numbered context passages. "
        "Answer in a few words and cite the passage number like [1]. "
        "If the context does not contain the answer, say: I don't know."
    ),
    closed_book="Answer the question in a few words. If you do not know, say: I don't know.",
    context_label="Context:",
    question_label="Question:",
    answer_label="Answer:",
    no_passages="(no passages found)",
    fill_in_blank="Fill in the blank:",
    decline="I don't know.",
    few_shot=(
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
    ),
)

# Written for French rather than translated word for word; the examples are those of corpora/fewshot-fr.jsonl.
FRENCH_PROMPT = PromptText(
    preprompt=(
        "Tu réponds aux questions en français, uniquement à partir des passages numérotés du contexte. "
        "Réponds en quelques mots et cite le numéro du passage, par exemple [1]. "
        "Si le contexte ne contient pas la réponse, dis : Je ne sais pas."
    ),
    closed_book="Réponds à la question en français, en quelques mots. Si tu ne sais pas, dis : Je ne sais pas.",
    context_label="Contexte :",
    question_label="Question :",
    answer_label="Réponse :",
    no_passages="(aucun passage trouvé)",
    fill_in_blank="Complète le blanc :",
    decline="Je ne sais pas.",
    few_shot=(
        FewShotExample(
            "Le pont d'Orla a ouvert en 1911 et franchit la rivière Tams à son point le plus étroit.",
            "Quand le pont d'Orla a-t-il ouvert ?",
            "1911 [1]",
        ),
        FewShotExample(
            "La bibliothèque de Greyfield prête jusqu'à six livres par carte. Chaque jour de retard coûte dix centimes.",
            "Combien de livres une carte permet-elle d'emprunter à la bibliothèque de Greyfield ?",
            "six livres [1]",
        ),
        FewShotExample(
            "Le club d'échecs se réunit le jeudi dans la salle B4. Sa présidente est Mara Okafor.",
            "Qui est la présidente du club d'échecs ?",
            "Mara Okafor [1]",
        ),
        FewShotExample(
            "La compagnie Kestrel Airways relie Dunmore aux îles deux fois par semaine, le lundi et le vendredi.",
            "D'où partent les vols de Kestrel Airways ?",
            "Dunmore [1]",
        ),
    ),
)

PROMPT_TEXTS: dict[str, PromptText] = {"en": ENGLISH_PROMPT, "fr": FRENCH_PROMPT}  # one per rag.language.LANGUAGES
CLOSED_BOOK_PREPROMPT = ENGLISH_PROMPT.closed_book
BUILTIN_FEW_SHOT = list(ENGLISH_PROMPT.few_shot)


def prompt_text(language_code: str) -> PromptText:
    if language_code not in PROMPT_TEXTS:
        raise ValueError(f"no prompt texts for language {language_code!r}; choose one of {', '.join(PROMPT_TEXTS)}")
    return PROMPT_TEXTS[language_code]


def preprompt(config: Config, language_code: str, closed_book: bool = False) -> str:
    """The system preprompt: ``config.preprompt`` when set, else the built-in one in ``language_code``."""
    texts = prompt_text(language_code)
    if closed_book:
        return texts.closed_book
    return config.preprompt or texts.preprompt


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]
    input_ids: list[int]
    passages: list[Passage]  # the passages in the prompt, numbered [1]..[n] in this order
    omitted: int  # retrieved passages left out for the budget
    truncated: bool  # the last passage was cut to fit


def load_few_shot(config: Config, language_code: str = DEFAULT_LANGUAGE) -> list[FewShotExample]:
    """``config.few_shot`` examples: from ``config.few_shot_file``, else the built-in ones in ``language_code``."""
    if not config.few_shot:
        return []
    examples = list(prompt_text(language_code).few_shot)
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
    """The answer as scored: the first line with content, without citations, header or ``Answer:`` label;
    a line ending in a colon ("The answer is:") is joined to the next one, which holds what it announces.

    Why: a small model often runs on after its answer ("Paris.\\n\\n## What is ...");
    scoring only the first line is the usual stop-at-newline rule of QA harnesses,
    and the citations the RAG preprompt asks for are not part of the answer. The
    raw output is kept beside it (``Prediction.generated``).
    """
    cleaned = (ANSWER_LABEL.sub("", CITATION.sub("", line).strip()).strip()
               for line in generated.splitlines() if not HEADER_LINE.match(line.strip()))
    content = [line for line in cleaned if line]
    if not content:
        return ""
    if content[0].endswith(":") and len(content) > 1:
        return f"{content[0]} {content[1]}"
    return content[0]


def user_turn(question: str, blocks: list[str], closed_book: bool, texts: PromptText = ENGLISH_PROMPT) -> str:
    if closed_book:
        return f"{texts.question_label} {question}"
    context = "\n\n".join(blocks) if blocks else texts.no_passages
    return f"{texts.context_label}\n{context}\n\n{texts.question_label} {question}"


def prompt_language(question: str, config: Config) -> str:
    """The language the prompt is written in: the question's (``config.language`` fixed, or detected)."""
    return resolve_language(config.language, question)


def build_messages(
    question: str, blocks: list[str], config: Config, examples: list[FewShotExample], language_code: str | None = None
) -> list[dict]:
    """Chat turns in ``language_code`` (default: the question's); ``blocks`` are the passages rendered with their headers."""
    closed_book = config.retriever == CLOSED_BOOK
    language_code = language_code or prompt_language(question, config)
    texts = prompt_text(language_code)
    messages = [{"role": "system", "content": preprompt(config, language_code, closed_book)}]
    for example in examples:
        shown = [f"[1] example\n{example.context}"]
        answer = example.answer.replace(" [1]", "") if closed_book else example.answer
        messages += [
            {"role": "user", "content": user_turn(example.question, shown, closed_book, texts)},
            {"role": "assistant", "content": answer},
        ]
    messages.append({"role": "user", "content": user_turn(question, blocks, closed_book, texts)})
    return messages


def plain_text(messages: list[dict], answer_label: str) -> str:
    """The turns as plain text for a base model: each user turn, each answer after ``answer_label``, then the label.

    >>> plain_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Question: 2+2?"}], "Answer:")
    'Be brief.\\n\\nQuestion: 2+2?\\nAnswer:'
    """
    blocks: list[str] = []
    for message in messages:
        if message["role"] == "assistant":
            blocks[-1] += f"\n{answer_label} {message['content']}"
        else:
            blocks.append(message["content"])
    return "\n\n".join(blocks) + f"\n{answer_label}"


def render(tokenizer, messages: list[dict], answer_label: str = ENGLISH_PROMPT.answer_label) -> list[int]:
    """Prompt token ids: the chat template, or plain text (:func:`plain_text`) for a model without one."""
    if tokenizer.chat_template is None:
        return list(tokenizer(plain_text(messages, answer_label))["input_ids"])
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])


def build_prompt(
    question: str,
    passages: list[Passage],
    tokenizer,
    config: Config,
    examples: list[FewShotExample] | None = None,
    *,
    embedder=None,
) -> Prompt:
    """The chat prompt for ``question`` over ``passages`` (best first); see the module docstring.

    ``examples`` default to ``load_few_shot`` in the question's language. ``embedder`` scores
    sentences when ``config.context`` is "sentences" (rag/context.py).
    """
    if config.context not in CONTEXTS:
        raise ValueError(f"unknown context {config.context!r}; choose one of {', '.join(CONTEXTS)}")
    language_code = prompt_language(question, config)
    texts = prompt_text(language_code)
    examples = load_few_shot(config, language_code) if examples is None else examples
    budget = prompt_budget(config)
    if config.retriever == CLOSED_BOOK:
        if passages:
            raise ValueError(f"retriever {CLOSED_BOOK!r} (closed book) takes no passages, got {len(passages)}")
        messages = build_messages(question, [], config, examples, language_code)
        ids = render(tokenizer, messages, texts.answer_label)
        _check_fits(len(ids), budget)
        return Prompt(messages, ids, [], 0, False)

    base = len(render(tokenizer, build_messages(question, [], config, examples, language_code), texts.answer_label))
    _check_fits(base, budget)
    if config.context == "sentences":
        if embedder is None:
            raise ValueError('context "sentences" scores sentences with the embedder: pass build_prompt(..., embedder=...)')
        room = min(budget - base, config.sentence_context_tokens)
        blocks, truncated = _sentence_blocks(question, passages, tokenizer, embedder, room, config.embed_batch_size), False
    else:
        blocks, truncated = _passage_blocks(passages, tokenizer, budget - base)
    packed = len(blocks)
    # Token merges at block boundaries can shift the count slightly: drop passages until it fits.
    while True:
        messages = build_messages(question, [text for _, text in blocks], config, examples, language_code)
        ids = render(tokenizer, messages, texts.answer_label)
        if len(ids) <= budget or not blocks:
            break
        blocks.pop()
    # Passages keep their rank numbers: with sentences, one with none kept is skipped, not renumbered.
    kept = list(passages[: blocks[-1][0]]) if blocks else []
    return Prompt(messages, ids, kept, len(passages) - len(blocks), truncated and len(blocks) == packed)


def _passage_blocks(passages: list[Passage], tokenizer, room: int) -> tuple[list[tuple[int, str]], bool]:
    """(number, header + text) of the passages that fit in ``room`` tokens, the first one that does not cut to fit."""
    blocks: list[tuple[int, str]] = []
    for number, passage in enumerate(passages, 1):
        block = f"{passage_header(number, passage)}\n{passage.text}"
        cost = len(tokenizer(block + "\n\n", add_special_tokens=False)["input_ids"])
        if cost > room:
            if room >= MIN_PASSAGE_TOKENS:
                block_ids = tokenizer(block, add_special_tokens=False)["input_ids"][: room - 4]
                blocks.append((number, tokenizer.decode(block_ids) + " ..."))
                return blocks, True
            break
        blocks.append((number, block))
        room -= cost
    return blocks, False


def _sentence_blocks(question: str, passages: list[Passage], tokenizer, embedder, room: int, batch_size: int) -> list[tuple[int, str]]:
    """(number, header + kept sentences) for each passage with a sentence among the closest to the question."""
    headers = {number: passage_header(number, passage) for number, passage in enumerate(passages, 1)}
    # Headers cost tokens too; reserving them all up front keeps the sentences' budget simple.
    header_tokens = sum(len(ids) + 2 for ids in tokenizer(list(headers.values()), add_special_tokens=False)["input_ids"]) if passages else 0
    chosen = closest_sentences(question, passages, embedder, tokenizer, room - header_tokens, batch_size)
    # One sentence a line: no two kept sentences, which may not have been neighbours, read as one.
    return [(index + 1, "\n".join([headers[index + 1], *sentences])) for index, sentences in sorted(chosen.items())]


def _check_fits(tokens: int, budget: int) -> None:
    if tokens > budget:
        raise ValueError(
            f"the question, preprompt and few-shot examples take {tokens} tokens, over the context budget "
            f"of {budget}; shorten the question, use fewer few-shot examples or raise context_tokens"
        )
