"""The wire formats: OpenAI chat completions (plain and streamed), and ``/v1/ask``; request models and bodies.

A chat completion answers the last user message with the served RAG pipeline
(earlier turns and system messages are not part of the RAG prompt, which has its
own preprompt). Decoding is greedy: ``temperature``, ``top_p`` and other sampling
fields are accepted and ignored. The answer's sources come back twice:

- in the text, as a numbered list after the answer, ``[1] history.md, page 2``,
  the numbers the answer cites (so a client that shows only the text shows them);
- in an extra ``sources`` field of the completion (of the first and the last
  chunk when streamed): ``{number, source, page, chunk_id, score, text, cited}``.

Two extra request fields, sent with the OpenAI client's ``extra_body``, pick the
retrieval: ``retriever`` (dense, bm25, hybrid or none) and ``k``; a ``model`` of
the form ``retriever+generator`` (see ``GET /v1/models``) does the same.

    >>> citations([Source("/d/history.md", 2, 7, 0.5, "...", True)])
    '\\n\\nSources:\\n[1] history.md, page 2'
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict

from pydantic import BaseModel, ConfigDict, Field

from rag.passage import Passage
from rag.pipeline import Answer, Source
from rag.prompt import passage_header
from rag.serve.config import MAX_K


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict] | None = None

    def text(self) -> str:
        """The message's text: a string, or the ``text`` parts of a list of content parts."""
        if isinstance(self.content, list):
            return "\n".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    # Sampling fields (temperature, top_p, seed, user...) are accepted and ignored: decoding is greedy.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = 1
    retriever: str | None = None  # rag-lab: dense | bm25 | hybrid | none
    k: int | None = Field(None, ge=1, le=MAX_K)  # rag-lab: passages to retrieve

    def question(self) -> str:
        """The last user message: what the RAG pipeline answers."""
        for message in reversed(self.messages):
            if message.role == "user" and message.text().strip():
                return message.text().strip()
        raise ValueError("messages hold no user message with text: nothing to answer")


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    retriever: str | None = None
    k: int | None = Field(None, ge=1, le=MAX_K)
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False  # server-sent events: sources, token..., answer


def sources_payload(sources: list[Source]) -> list[dict]:
    return [{"number": number, **asdict(source)} for number, source in enumerate(sources, 1)]


def citations(sources: list[Source]) -> str:
    """The numbered source list appended to the answer text (the numbers the answer's ``[n]`` refer to)."""
    if not sources:
        return ""
    lines = [passage_header(number, Passage(s.text, s.source, s.page)) for number, s in enumerate(sources, 1)]
    return "\n\nSources:\n" + "\n".join(lines)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(answer: Answer, completion_tokens: int) -> dict:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": answer.prompt_tokens + completion_tokens}


def completion(model: str, answer: Answer, finish_reason: str, completion_tokens: int) -> dict:
    """A ``chat.completion`` body, with the sources in the text and in ``sources``."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.answer + citations(answer.sources)},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(answer, completion_tokens),
        "sources": sources_payload(answer.sources),
    }


class ChunkWriter:
    """The ``chat.completion.chunk`` bodies of one streamed completion, as server-sent events."""

    def __init__(self, model: str):
        self.model = model
        self.id = completion_id()
        self.created = int(time.time())

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }
        return sse(body)

    def usage(self, answer: Answer, completion_tokens: int) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": []}
        return sse(body | {"usage": usage(answer, completion_tokens)})


def sse(data: dict | list | str, event: str | None = None) -> str:
    """One server-sent event; ``data`` is JSON unless it is a string (``[DONE]``)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    """OpenAI's error shape: ``{"error": {"message", "type", "code", "param"}}``."""
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}
