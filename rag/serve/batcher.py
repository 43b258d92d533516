"""The request queue: concurrent requests wait in order and are answered in batches by one worker thread.

Each request becomes a :class:`Job`. The worker takes the oldest job, waits a
short collection window for others (up to ``max_batch``), and hands the batch
to ``run_batch`` (the :class:`rag.serve.engine.Engine`), which streams events
back to each job's asyncio queue. Nothing is dropped: a job waits however long
the queue is. A job whose client has gone is cancelled: if it is still queued
it is never run, and if it is being generated the engine stops its row.

    >>> batcher = Batcher(engine.run, window_s=0.02, max_batch=8)   # doctest: +SKIP
    >>> batcher.submit(job)                                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One question as the server answers it."""

    question: str
    retriever: str  # a rag.retrieve method, or CLOSED_BOOK
    k: int
    max_tokens: int


class JobFailed(Exception):
    """The engine could not answer a job; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Job:
    """A request in flight: the worker thread emits events, the request's coroutine reads them.

    Events are ``(kind, value)``: ``("sources", [Source])`` once retrieval is done,
    ``("token", str)`` per piece of text, then ``("done", value)`` or ``("error", JobFailed)``.
    """

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop):
        self.request = request
        self.submitted = time.perf_counter()
        self.cancelled = threading.Event()
        self.finished = False  # its last event was emitted
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self._getter: asyncio.Future | None = None

    def emit(self, kind: str, value) -> None:
        """Called from the worker thread."""
        if kind in ("done", "error"):
            self.finished = True
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop has closed: the server is stopping
            self.cancelled.set()

    def cancel(self) -> None:
        """The client has gone: the worker skips this job, or stops generating its row."""
        if not self.finished:
            self.cancelled.set()
        if self._getter is not None:
            self._getter.cancel()

    async def next_event(self, timeout: float | None = None) -> tuple[str, object] | None:
        """The next event, or None if none came within ``timeout`` seconds (then it is kept for the next call)."""
        if self._getter is None:
            self._getter = asyncio.ensure_future(self._events.get())
        done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        if not done:
            return None
        event, self._getter = self._getter.result(), None
        return event

    async def events(self) -> AsyncIterator[tuple[str, object]]:
        """Every event up to and including the last (``done`` or ``error``)."""
        while True:
            kind, value = await self.next_event()
            yield kind, value
            if kind in ("done", "error"):
                return


@dataclass
class Counters:
    """What /healthz reports."""

    finished: int = 0  # jobs that got their answer (or their error)
    cancelled: int = 0  # jobs whose client went away, queued or mid-generation
    batches: int = 0
    active: int = 0  # jobs in the batch being generated


_STOP = object()


class Batcher:
    def __init__(self, run_batch: Callable[[list[Job]], None], window_s: float, max_batch: int):
        self.run_batch = run_batch
        self.window_s = window_s
        self.max_batch = max_batch
        self.counters = Counters()
        self._queue: queue.Queue = queue.Queue()  # unbounded: a request waits, it is never refused for load
        self._worker = threading.Thread(target=self._serve, name="rag-serve-batcher", daemon=True)

    def start(self) -> Batcher:
        self._worker.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(_STOP)
        self._worker.join(timeout)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def _collect(self) -> list[Job] | None:
        """The oldest job and those arriving within the window after it, up to ``max_batch``; None to stop."""
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)  # stop after this batch
                break
            batch.append(job)
        return batch

    def _serve(self) -> None:
        while (batch := self._collect()) is not None:
            live = [job for job in batch if not job.cancelled.is_set()]
            self.counters.cancelled += len(batch) - len(live)
            if not live:
                continue
            self.counters.batches += 1
            self.counters.active = len(live)
            try:
                self.run_batch(live)
            except Exception as error:  # noqa: BLE001 - one failed batch must not stop the server
                logger.exception("batch of %d failed", len(live))
                for job in live:
                    job.emit("error", JobFailed(500, f"generation failed: {error}"))
            finally:
                self.counters.active = 0
            for job in live:
                if job.finished:
                    self.counters.finished += 1
                else:
                    self.counters.cancelled += 1
        # Stopping: whoever still waits gets an answer rather than silence.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                job.emit("error", JobFailed(503, "the server is shutting down"))
