"""The engine: answer a batch of jobs with the served pipeline, streaming each row's text to its job.

One batch, in the worker thread (models are loaded once and used by this
thread only):

1. reopen the index if a re-ingest made a new generation live (``Pipeline.refresh``);
2. retrieve per (retriever, k) group, one search call each, and build each prompt;
3. send each job its sources, then generate all rows together with
   ``Generator.generate_batch``: a streamer hands each step's tokens (B,) to
   :class:`RowText` decoders, and a stopping criterion ends a row at its own
   ``max_tokens`` or as soon as its client has gone (when every row has
   stopped, generation ends early);
4. send each job its :class:`Done`: the ``ask --json`` answer, with the sources'
   ``cited`` marks.

    >>> engine = Engine(served, max_tokens=512)        # doctest: +SKIP
    >>> Batcher(engine.run, 0.02, 8).start()           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from rag.config import CLOSED_BOOK
from rag.generate import Generator
from rag.index import FileRecord
from rag.pipeline import Answer, sources_of
from rag.prompt import Prompt, build_prompt
from rag.retrieve import Retrieved
from rag.serve.batcher import Job, JobFailed
from rag.serve.served import Served

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Done:
    answer: Answer  # what ``python -m rag ask --json`` prints
    finish_reason: str  # "stop" (end of answer) or "length" (max_tokens reached)
    completion_tokens: int


class RowText:
    """Incremental decoding of one row: text is released up to the last space or newline.

    Why hold back: a byte-level BPE token can be half a character, and the
    tokenizer may join a word's pieces differently once the next token is known
    (the rule of transformers' ``TextStreamer``).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = 0  # characters released so far

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\n"):
            ready = len(text)
        elif text.endswith("\ufffd"):
            ready = self.sent
        else:
            ready = max(self.sent, text.rfind(" ") + 1)
        piece, self.sent = text[self.sent : ready], ready
        return piece

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        piece, self.sent = text[self.sent :], len(text)
        return piece

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)


class RowLimits(StoppingCriteria):
    """Stop each row at its own token limit, or once its job is cancelled; called once per generated token."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        self.steps += 1
        done = [self.steps >= job.request.max_tokens or job.cancelled.is_set() for job in self.jobs]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # (B,)


class RowStreamer(BaseStreamer):
    """Hands each step's new tokens (B,) to the rows' decoders, their text to the jobs, and says when a row ends.

    ``on_finish(i, reason)`` is called once per row that ends with an answer, as soon as it
    ends ("stop": end of answer; "length": its max_tokens), so that a short answer need not
    wait for the longest row of its batch.
    """

    def __init__(self, jobs: list[Job], tokenizer, eos_ids: set[int], on_finish: Callable[[int, str], None]):
        self.jobs = jobs
        self.rows = [RowText(tokenizer) for _ in jobs]
        self.finish: list[str | None] = [None] * len(jobs)  # "stop" | "length" | "cancelled" once a row is over
        self.first_token_at: list[float | None] = [None] * len(jobs)
        self.eos_ids = eos_ids
        self.on_finish = on_finish
        self.prompt_seen = False

    def _end_row(self, i: int, reason: str) -> None:
        self.finish[i] = reason
        if piece := self.rows[i].flush():
            self.jobs[i].emit("token", piece)
        self.on_finish(i, reason)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate hands over the prompt ids (B, T) first
            self.prompt_seen = True
            return
        for i, token in enumerate(value.tolist()):  # (B,)
            job, row = self.jobs[i], self.rows[i]
            if self.finish[i]:
                continue  # after its end a row only gets padding
            if job.cancelled.is_set():
                self.finish[i] = "cancelled"
            elif token in self.eos_ids:
                self._end_row(i, "stop")
            else:
                self.first_token_at[i] = self.first_token_at[i] or time.perf_counter()
                if piece := row.push(token):
                    job.emit("token", piece)
                if len(row.ids) >= job.request.max_tokens:
                    self._end_row(i, "length")

    def end(self) -> None:
        for i in range(len(self.jobs)):
            if not self.finish[i]:
                self._end_row(i, "length")


class Engine:
    """Answers batches of jobs with one served pipeline; ``max_tokens`` caps what a request may ask for."""

    def __init__(self, served: Served, max_tokens: int):
        self.served = served
        self.pipeline = served.pipeline
        base = self.pipeline.generator
        # The same weights, checked against the model window for the largest request allowed.
        self.generator = Generator(base.model, base.tokenizer, base.config.override({"max_new_tokens": max_tokens}))
        eos = self.generator.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.generator.tokenizer.eos_token_id}
        self.lock = threading.Lock()  # the index may be reopened by the worker or by a request for a file
        self.refresh()
        if self.pipeline.retriever is not None:
            # Load the query embedder, FAISS and BM25 now rather than on the first question.
            self.pipeline.retriever.search(["warm-up"], "hybrid", 1)

    # -------------------------------------------------------------------- the index

    def refresh(self) -> str | None:
        """Reopen the index if a new generation is live; the generation served, None closed book."""
        with self.lock:
            if self.pipeline.refresh():
                logger.info("index %s: now serving generation %s", self.pipeline.index.folder.parent, self.pipeline.index.folder.name)
            return self.pipeline.index.folder.name if self.pipeline.index else None

    def indexed_file(self, source: str) -> FileRecord | None:
        """The index's record of ``source`` (a path as the index stores it), None if it holds no such file."""
        self.refresh()
        with self.lock:
            return self.pipeline.index.files().get(source) if self.pipeline.index else None

    # -------------------------------------------------------------------- a batch

    def _retrieve(self, jobs: list[Job]) -> list[list[Retrieved]]:
        """Hits per job, one search per (retriever, k) group."""
        hits: list[list[Retrieved]] = [[] for _ in jobs]
        groups: dict[tuple[str, int], list[int]] = {}
        for i, job in enumerate(jobs):
            if job.request.retriever != CLOSED_BOOK:
                groups.setdefault((job.request.retriever, job.request.k), []).append(i)
        with self.lock:
            self.pipeline.refresh()
            retriever = self.pipeline.retriever
            for (method, k), members in groups.items():
                found = retriever.search([jobs[i].request.question for i in members], method, k)
                for i, row in zip(members, found):
                    hits[i] = row
        return hits

    def _prompt(self, job: Job, hits: list[Retrieved]) -> Prompt:
        config = self.pipeline.config.override({"retriever": job.request.retriever, "k": job.request.k})
        return build_prompt(
            job.request.question, [hit.chunk for hit in hits], self.generator.tokenizer, config, self.pipeline.examples,
            embedder=self.pipeline.sentence_embedder,
        )

    def run(self, jobs: list[Job]) -> None:
        """Answer ``jobs`` (at most ``generation_batch_size``), streaming events to each; see the module docstring."""
        began = time.perf_counter()
        hits = self._retrieve(jobs)
        retrieved_at = time.perf_counter()
        ready: list[tuple[Job, list[Retrieved], Prompt]] = []
        for job, found in zip(jobs, hits):
            try:
                prompt = self._prompt(job, found)
            except ValueError as error:  # the question alone is over the context budget
                job.emit("error", JobFailed(400, str(error)))
                continue
            job.emit("sources", sources_of(found, prompt, ""))
            ready.append((job, found, prompt))
        if not ready:
            return
        live = [job for job, _, _ in ready]

        def finished(i: int, reason: str) -> None:
            job, found, prompt = ready[i]
            now = time.perf_counter()
            text = streamer.rows[i].text.strip()
            timings = {
                "queued_s": round(began - job.submitted, 4),
                "retrieval_s": round(retrieved_at - began, 4),
                "first_token_s": round((streamer.first_token_at[i] or now) - job.submitted, 4),
                "total_s": round(now - job.submitted, 4),
            }
            answer = Answer(job.request.question, text, sources_of(found, prompt, text), len(prompt.input_ids), prompt.omitted, timings)
            job.emit("done", Done(answer, reason, len(streamer.rows[i].ids)))

        streamer = RowStreamer(live, self.generator.tokenizer, self.eos_ids, finished)
        self.generator.generate_batch(
            [prompt.input_ids for _, _, prompt in ready],
            max_new_tokens=max(job.request.max_tokens for job in live),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([RowLimits(live)]),
        )
        logger.debug("batch of %d answered in %.2f s", len(ready), time.perf_counter() - began)
