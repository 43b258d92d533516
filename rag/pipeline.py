"""Pipeline: retrieve -> prompt -> generate, with models loaded once.

    >>> from rag import Pipeline, Config
    >>> pipeline = Pipeline("indexes/vellmar", Config(retriever="hybrid", k=4))  # doctest: +SKIP
    >>> answer = pipeline.ask("When was the cooperative founded?")              # doctest: +SKIP
    >>> answer.answer, answer.sources[0].source                                 # doctest: +SKIP

``retriever="none"`` (``CLOSED_BOOK``), or no index, is the closed-book baseline.
A pipeline is long-lived (``rag chat`` keeps one): before each question it moves
to the newest generation of its index, so a re-ingest shows up in the next answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.config import CLOSED_BOOK, Config
from rag.generate import Generator
from rag.index import Index
from rag.prompt import Prompt, build_prompt, cited_numbers, load_few_shot
from rag.retrieve import RETRIEVAL_METHODS, Retrieved, Retriever


@dataclass(frozen=True)
class Source:
    source: str
    page: int | None
    chunk_id: int
    score: float
    text: str
    cited: bool  # the answer cites this passage by its number


@dataclass
class Answer:
    question: str
    answer: str
    sources: list[Source]
    prompt_tokens: int
    omitted_passages: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def sources_of(hits: list[Retrieved], prompt: Prompt, answer: str) -> list[Source]:
    """The hits the prompt shows, numbered as in the prompt, marked where ``answer`` cites them."""
    cited = cited_numbers(answer)
    return [
        Source(hit.chunk.source, hit.chunk.page, hit.chunk_id, round(hit.score, 4), hit.chunk.text, number in cited)
        for number, hit in enumerate(hits[: len(prompt.passages)], 1)
    ]


class Pipeline:
    """Question answering over one index; every model is loaded on first use, then kept."""

    def __init__(
        self,
        index: str | Path | Index | None,
        config: Config = Config(),
        *,
        adapter: str | None = None,
        embedder_spec: str | None = None,
        generator: Generator | None = None,
    ):
        if index is None:
            config = config.override({"retriever": CLOSED_BOOK})
        if config.retriever not in (*RETRIEVAL_METHODS, CLOSED_BOOK):
            raise ValueError(f"unknown retriever {config.retriever!r}; choose one of {', '.join([*RETRIEVAL_METHODS, CLOSED_BOOK])}")
        self.config = config
        self.index = Index.open(index) if isinstance(index, (str, Path)) else index
        self.retriever = None if self.closed_book else Retriever(self.index, config, embedder_spec=embedder_spec)
        self.adapter = adapter
        self.embedder_spec = embedder_spec
        self._generator = generator
        # A few-shot file is read once; the built-in examples follow each question's language.
        self.examples = load_few_shot(config) if config.few_shot_file else None

    @property
    def closed_book(self) -> bool:
        return self.config.retriever == CLOSED_BOOK

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = Generator.load(self.config, adapter=self.adapter)
        return self._generator

    def refresh(self) -> bool:
        """Move to the newest generation of the index if a re-ingest published one; True if it did.

        Called before each search, so a long-running process (``rag chat``,
        ``rag serve``) picks up a re-ingest without a restart; the query embedder
        is kept when the new generation was embedded by the same one.
        """
        if self.closed_book or not self.retriever.refresh():
            return False
        self.index = self.retriever.index
        return True

    def retrieve(self, questions: list[str]) -> list[list[Retrieved]]:
        """Hits per question, best first, from the index's newest generation; none in closed-book mode."""
        if self.closed_book:
            return [[] for _ in questions]
        self.refresh()
        return self.retriever.search(questions)

    def check(self, questions: list[str]) -> None:
        """Refuse blank questions, and those that alone overflow the prompt budget, before any search."""
        for question in questions:
            if not question.strip():
                raise ValueError("the question is blank: ask something")
        self.prompts(questions, [[] for _ in questions])  # raises, naming the budget, if one cannot fit

    @property
    def sentence_embedder(self):
        """The query embedder, which scores sentences for ``context = "sentences"``; None where no prompt needs it."""
        return self.retriever.embedder if self.config.context == "sentences" and self.retriever else None

    def prompts(self, questions: list[str], retrieved: list[list[Retrieved]]) -> list[Prompt]:
        tokenizer = self.generator.tokenizer
        return [
            build_prompt(q, [hit.chunk for hit in hits], tokenizer, self.config, self.examples, embedder=self.sentence_embedder)
            for q, hits in zip(questions, retrieved)
        ]

    def ask(self, question: str, on_token: Callable[[str], None] | None = None) -> Answer:
        """Answer one question, calling ``on_token`` with each piece of text as it is generated."""
        self.check([question])
        began = time.perf_counter()
        retrieved = self.retrieve([question])
        retrieved_at = time.perf_counter()
        prompt = self.prompts([question], retrieved)[0]
        pieces, first_token_at = [], None
        for piece in self.generator.stream(prompt.input_ids):
            first_token_at = first_token_at or time.perf_counter()
            pieces.append(piece)
            if on_token:
                on_token(piece)
        done = time.perf_counter()
        text = "".join(pieces).strip()
        timings = {
            "retrieval_s": round(retrieved_at - began, 4),
            "first_token_s": round((first_token_at or done) - began, 4),
            "total_s": round(done - began, 4),
        }
        return Answer(question, text, sources_of(retrieved[0], prompt, text), len(prompt.input_ids), prompt.omitted, timings)

    def ask_batch(self, questions: list[str]) -> list[Answer]:
        """Answer many questions with batched retrieval and left-padded batched generation."""
        self.check(questions)
        retrieved = self.retrieve(questions)
        prompts = self.prompts(questions, retrieved)
        answers = []
        generations = self.generator.generate([p.input_ids for p in prompts])
        for question, hits, prompt, generation in zip(questions, retrieved, prompts, generations):
            answers.append(
                Answer(
                    question,
                    generation.text,
                    sources_of(hits, prompt, generation.text),
                    len(prompt.input_ids),
                    prompt.omitted,
                    {"generation_s": round(generation.seconds, 4)},
                )
            )
        return answers
